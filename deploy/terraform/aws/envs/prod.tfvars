name              = "shoplake-prod"
region            = "eu-west-1"
profile           = "prod"
cpu               = 4096
memory            = 16384
db_instance_class = "db.m7g.large"
db_multi_az       = true
redis_node_type   = "cache.m7g.large"
# vpc_id, private_subnet_ids, public_subnet_ids, certificate_arn, image: your own
