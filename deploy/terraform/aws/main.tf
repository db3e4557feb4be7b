# shoplake on AWS: one Fargate task (the event log and the lake are on EFS
# and have one writer), behind an HTTPS load balancer; RDS PostgreSQL for the
# orders API; ElastiCache Redis as the answer cache; an S3 bucket for exports
# and for the lake copy Athena reads through Glue (`shoplake export`,
# `shoplake catalog glue`); secrets in Secrets Manager.
#
# Not here yet (issue #8): MSK or Kinesis in front of the collector and the
# lake itself on S3. Until then the task count stays 1.

provider "aws" {
  region = var.region
  default_tags { tags = merge({ app = "shoplake", stack = var.name }, var.tags) }
}

data "aws_caller_identity" "me" {}

locals {
  http_port = 8080
}

# --- network -----------------------------------------------------------------

resource "aws_security_group" "lb" {
  name   = "${var.name}-lb"
  vpc_id = var.vpc_id
  ingress {
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidrs
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "task" {
  name   = "${var.name}-task"
  vpc_id = var.vpc_id
  ingress {
    from_port       = local.http_port
    to_port         = local.http_port
    protocol        = "tcp"
    security_groups = [aws_security_group.lb.id]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "data" {
  name   = "${var.name}-data"
  vpc_id = var.vpc_id
  dynamic "ingress" {
    for_each = { efs = 2049, postgres = 5432, redis = 6379 }
    content {
      from_port       = ingress.value
      to_port         = ingress.value
      protocol        = "tcp"
      security_groups = [aws_security_group.task.id]
    }
  }
}

# --- the data directory: EFS ---------------------------------------------------

resource "aws_efs_file_system" "data" {
  creation_token  = "${var.name}-data"
  encrypted       = true
  throughput_mode = "elastic"
}

resource "aws_efs_mount_target" "data" {
  for_each        = toset(var.private_subnet_ids)
  file_system_id  = aws_efs_file_system.data.id
  subnet_id       = each.value
  security_groups = [aws_security_group.data.id]
}

resource "aws_efs_access_point" "data" {
  file_system_id = aws_efs_file_system.data.id
  posix_user {
    uid = 10001
    gid = 10001
  }
  root_directory {
    path = "/shoplake"
    creation_info {
      owner_uid   = 10001
      owner_gid   = 10001
      permissions = "0750"
    }
  }
}

resource "aws_efs_backup_policy" "data" {
  file_system_id = aws_efs_file_system.data.id
  backup_policy { status = "ENABLED" }
}

# --- orders database: RDS PostgreSQL -----------------------------------------

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "aws_db_subnet_group" "orders" {
  name       = "${var.name}-orders"
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_instance" "orders" {
  identifier                 = "${var.name}-orders"
  engine                     = "postgres"
  engine_version             = "16"
  instance_class             = var.db_instance_class
  allocated_storage          = 50
  max_allocated_storage      = 500
  storage_encrypted          = true
  db_name                    = "orders"
  username                   = "shoplake"
  password                   = random_password.db.result
  db_subnet_group_name       = aws_db_subnet_group.orders.name
  vpc_security_group_ids     = [aws_security_group.data.id]
  multi_az                   = var.db_multi_az
  backup_retention_period    = 7
  deletion_protection        = var.profile == "prod"
  skip_final_snapshot        = var.profile != "prod"
  final_snapshot_identifier  = "${var.name}-orders-final"
  auto_minor_version_upgrade = true
}

# --- answer cache: ElastiCache Redis -----------------------------------------

resource "aws_elasticache_subnet_group" "cache" {
  count      = var.redis_node_type == null ? 0 : 1
  name       = "${var.name}-cache"
  subnet_ids = var.private_subnet_ids
}

resource "aws_elasticache_replication_group" "cache" {
  count                      = var.redis_node_type == null ? 0 : 1
  replication_group_id       = "${var.name}-cache"
  description                = "shoplake answer cache"
  engine                     = "redis"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 1
  subnet_group_name          = aws_elasticache_subnet_group.cache[0].name
  security_group_ids         = [aws_security_group.data.id]
  # shoplake's Redis client has no TLS yet: the cache sits in private subnets,
  # reachable from the task's security group only
  transit_encryption_enabled = false
  at_rest_encryption_enabled = true
  parameter_group_name       = "default.redis7"
}

# --- exports and the lake copy for Athena: S3 ---------------------------------

resource "aws_s3_bucket" "lake" {
  bucket = "${var.name}-lake-${data.aws_caller_identity.me.account_id}"
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default { sse_algorithm = "AES256" }
  }
}

# --- secrets ----------------------------------------------------------------

resource "random_password" "write_key" {
  length  = 32
  special = false
}

resource "aws_secretsmanager_secret" "orders_db" {
  name = "${var.name}/orders-db-url"
}

resource "aws_secretsmanager_secret_version" "orders_db" {
  secret_id     = aws_secretsmanager_secret.orders_db.id
  secret_string = "postgres://shoplake:${random_password.db.result}@${aws_db_instance.orders.address}:5432/orders?sslmode=require"
}

resource "aws_secretsmanager_secret" "write_keys" {
  name = "${var.name}/write-keys"
}

resource "aws_secretsmanager_secret_version" "write_keys" {
  secret_id     = aws_secretsmanager_secret.write_keys.id
  secret_string = "web=${random_password.write_key.result}"
}

# --- the task -----------------------------------------------------------------

resource "aws_cloudwatch_log_group" "shoplake" {
  name              = "/ecs/${var.name}"
  retention_in_days = 30
}

data "aws_iam_policy_document" "assume_ecs" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [aws_secretsmanager_secret.orders_db.arn, aws_secretsmanager_secret.write_keys.arn]
    }]
  })
}

# what shoplake itself may do: export to the bucket, register tables in Glue
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs.json
}

resource "aws_iam_role_policy" "task" {
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload"]
        Resource = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["glue:CreateDatabase", "glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable"]
        Resource = ["*"]
      },
    ]
  })
}

resource "aws_ecs_cluster" "shoplake" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "shoplake" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  volume {
    name = "data"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.data.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.data.id
        iam             = "DISABLED"
      }
    }
  }
  container_definitions = jsonencode([{
    name         = "shoplake"
    image        = var.image
    essential    = true
    command      = ["serve"]
    portMappings = [{ containerPort = local.http_port, protocol = "tcp" }]
    mountPoints  = [{ sourceVolume = "data", containerPath = "/var/lib/shoplake" }]
    stopTimeout  = 120
    environment = concat([
      { name = "SHOPLAKE_PROFILE", value = var.profile },
      { name = "SHOPLAKE_SERVER__TRUST_FORWARDED_FOR", value = "true" },
      { name = "SHOPLAKE_SERVER__SECURE_COOKIES", value = "true" },
      { name = "AWS_REGION", value = var.region },
      ], var.redis_node_type == null ? [] : [
      { name = "SHOPLAKE_CACHE__BACKEND", value = "redis" },
      { name = "SHOPLAKE_CACHE__REDIS_URL", value = "redis://${aws_elasticache_replication_group.cache[0].primary_endpoint_address}:6379" },
    ])
    secrets = [
      { name = "SHOPLAKE_ORDERS_DB", valueFrom = aws_secretsmanager_secret.orders_db.arn },
      { name = "SHOPLAKE_WRITE_KEYS", valueFrom = aws_secretsmanager_secret.write_keys.arn },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.shoplake.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "shoplake"
      }
    }
  }])
}

resource "aws_lb" "shoplake" {
  name               = var.name
  load_balancer_type = "application"
  subnets            = var.public_subnet_ids
  security_groups    = [aws_security_group.lb.id]
}

resource "aws_lb_target_group" "shoplake" {
  name        = var.name
  port        = local.http_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  health_check {
    path    = "/readyz"
    matcher = "200"
  }
  deregistration_delay = 30
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.shoplake.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.shoplake.arn
  }
}

resource "aws_ecs_service" "shoplake" {
  name            = var.name
  cluster         = aws_ecs_cluster.shoplake.id
  task_definition = aws_ecs_task_definition.shoplake.arn
  launch_type     = "FARGATE"
  # one writer of the event log and the lake: never two tasks at once
  desired_count                      = 1
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.task.id]
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.shoplake.arn
    container_name   = "shoplake"
    container_port   = local.http_port
  }
  depends_on = [aws_lb_listener.https, aws_efs_mount_target.data]
}
