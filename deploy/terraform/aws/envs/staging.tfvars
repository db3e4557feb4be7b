name              = "shoplake-staging"
region            = "eu-west-1"
profile           = "staging"
cpu               = 2048
memory            = 8192
db_instance_class = "db.t4g.medium"
db_multi_az       = false
redis_node_type   = "cache.t4g.small"
# vpc_id, private_subnet_ids, public_subnet_ids, certificate_arn, image: your own
