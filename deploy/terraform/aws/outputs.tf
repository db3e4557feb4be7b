output "url" {
  description = "Where shops send events and people open the dashboard."
  value       = "https://${aws_lb.shoplake.dns_name}/"
}

output "lake_bucket" {
  description = "The bucket for `shoplake export --to s3://...` and `shoplake catalog glue --location s3://...`."
  value       = aws_s3_bucket.lake.bucket
}

output "write_keys_secret" {
  description = "The Secrets Manager secret holding the write keys (NAME=KEY,...)."
  value       = aws_secretsmanager_secret.write_keys.name
}
