variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "tekton-relay"
}

variable "artifacts_dir" {
  description = "Where `scripts/lambda` left the two artifacts: <dir>/providers/relay/bootstrap.zip (every provider function) and <dir>/ingress/relay/bootstrap.zip (the ingress); by default target/lambda of the checkout."
  type        = string
}

variable "architecture" {
  description = "The functions' architecture: arm64 (`scripts/lambda`) or x86_64 (`scripts/lambda --arch x86_64`)."
  type        = string
  default     = "arm64"
  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture is arm64 or x86_64."
  }
}

variable "config_file" {
  description = "The relay.yaml every function serves (its Providers and Notifications; the ingress's spec.inboundAuth). Published as the SSM parameter /<name>/relay.yaml, which the functions read (RELAY_CONFIG=ssm://...) and re-read within a minute of a change: editing it needs no rebuild."
  type        = string
}

variable "secrets" {
  description = "The secrets each function reads, by function (a provider type, or \"ingress\"): the ssm://NAME and secretsmanager://NAME-or-ARN references its Providers' (or the ingress's) ...File settings name in config_file. Each function may read exactly its own."
  type        = map(list(string))
  default     = {}
  validation {
    condition     = alltrue([for refs in values(var.secrets) : alltrue([for r in refs : can(regex("^(ssm|secretsmanager)://.+", r))])])
    error_message = "Each secret is ssm://NAME or secretsmanager://NAME-or-ARN (a #key suffix is allowed)."
  }
}

variable "kms_key_arns" {
  description = "Customer managed KMS keys that encrypt the secrets (SecureString parameters, Secrets Manager secrets); the functions may decrypt with them. Empty: the AWS managed keys."
  type        = list(string)
  default     = []
}

variable "provider_functions" {
  description = "The provider functions to deploy: the provider types your Notifications use (the provider table in functions/Cargo.toml lists them). Each one is invoked for every run event."
  type        = list(string)
  validation {
    condition     = alltrue([for f in var.provider_functions : can(regex("^[a-z][a-z0-9-]{0,30}$", f))])
    error_message = "Each provider function is a provider type: lower-case letters, digits and -."
  }
}

variable "event_source" {
  description = "EventBridge `source` the ingress puts events under."
  type        = string
  default     = "tekton.relay"
}

variable "log_retention_days" {
  description = "Retention of every function's log group."
  type        = number
  default     = 30
}

variable "memory_mb" {
  type    = number
  default = 128
}

variable "timeout_seconds" {
  description = "Function timeout; keep above the relay's delivery deadline (deadlineSeconds, default 20)."
  type        = number
  default     = 30
}

variable "reserved_concurrency" {
  description = "Concurrent executions reserved per function (caps provider API load). Unset (null): none reserved, so an account with a low concurrency quota can apply; each reservation is taken from the account's unreserved pool, which must stay at 100 or more."
  type        = number
  default     = null
  validation {
    condition     = var.reserved_concurrency == null || try(var.reserved_concurrency >= 1, false)
    error_message = "reserved_concurrency is null (unset) or at least 1."
  }
}

variable "vpc_subnet_ids" {
  description = "Run the functions in these subnets (to reach a self-hosted GitLab, Jira or EventListener in a VPC); empty: no VPC. The subnets need a route to the public APIs the providers call (a NAT gateway) and to DynamoDB, SQS and EventBridge (NAT or VPC endpoints)."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  description = "Security groups of the functions when vpc_subnet_ids is set."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.vpc_security_group_ids) > 0 || length(var.vpc_subnet_ids) == 0
    error_message = "vpc_subnet_ids needs vpc_security_group_ids."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic the dead-letter alarm notifies (empty: the alarm only shows in CloudWatch)."
  type        = string
  default     = ""
}

variable "maximum_retry_attempts" {
  description = "Lambda's own retries of a failed (retryable) invocation before the on-failure destination."
  type        = number
  default     = 2
}

variable "otlp_endpoint" {
  description = "OTLP/HTTP endpoint the functions export traces to (OTEL_EXPORTER_OTLP_ENDPOINT), e.g. http://localhost:4318 for the ADOT collector extension. Empty: no export (the trace context is still continued into provider calls)."
  type        = string
  default     = ""
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the metrics the functions write as embedded metric format log lines."
  type        = string
  default     = "TektonRelay"
}

variable "tags" {
  type    = map(string)
  default = {}
}
