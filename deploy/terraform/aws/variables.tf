variable "name" {
  description = "Prefix of every resource (shoplake-dev, shoplake-prod, ...)."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "vpc_id" {
  description = "The VPC to run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the task, EFS, RDS and Redis (at least two AZs)."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Subnets of the load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener."
  type        = string
}

variable "image" {
  description = "The shoplake image (deploy/Dockerfile), in ECR or another registry."
  type        = string
}

variable "cpu" {
  description = "Fargate vCPU units of the task (1024 = 1 vCPU)."
  type        = number
  default     = 2048
}

variable "memory" {
  description = "Fargate memory of the task, MiB."
  type        = number
  default     = 8192
}

variable "db_instance_class" {
  description = "RDS PostgreSQL instance class of the orders database."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_multi_az" {
  description = "A standby RDS instance in a second AZ."
  type        = bool
  default     = false
}

variable "redis_node_type" {
  description = "ElastiCache node type of the answer cache (null: no Redis, in-process cache)."
  type        = string
  default     = "cache.t4g.small"
  nullable    = true
}

variable "profile" {
  description = "shoplake profile: dev, staging or prod."
  type        = string
  default     = "prod"
}

variable "allowed_cidrs" {
  description = "Who may reach the load balancer (collection, API, dashboard)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}
