name              = "shoplake-dev"
region            = "eu-west-1"
profile           = "dev"
cpu               = 1024
memory            = 4096
db_instance_class = "db.t4g.micro"
db_multi_az       = false
redis_node_type   = null # the in-process cache
# vpc_id, private_subnet_ids, public_subnet_ids, certificate_arn, image: your own
