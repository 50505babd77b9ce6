# The relay in one region with the GitHub and Slack functions.
#
#   scripts/lambda                       # the two zips, in target/lambda
#   aws ssm put-parameter --name /tekton-relay/github/token --type SecureString --value "$GITHUB_TOKEN"
#   aws ssm put-parameter --name /tekton-relay/ingress/token --type SecureString --value "$(openssl rand -hex 32)"
#   aws secretsmanager create-secret --name tekton-relay/slack --secret-string '{"token": "xoxb-..."}'
#   terraform init && terraform apply    # publishes relay.yaml (this folder) as /tekton-relay/relay.yaml

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.29"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

module "relay" {
  source             = "../../modules/relay"
  name               = "tekton-relay"
  artifacts_dir      = "${path.root}/../../../target/lambda"
  provider_functions = ["github", "slack"]
  config_file        = "${path.root}/relay.yaml"
  # Exactly what each function's Providers (and the ingress's inboundAuth)
  # name in relay.yaml.
  secrets = {
    github  = ["ssm://tekton-relay/github/token"]
    slack   = ["secretsmanager://tekton-relay/slack#token"]
    ingress = ["ssm://tekton-relay/ingress/token"]
  }
  log_retention_days = 30
  tags = {
    app = "tekton-relay"
  }
}

output "ingress_url" {
  value = module.relay.ingress_url
}

output "store_url" {
  value = module.relay.store_url
}

output "dead_letter_queue_url" {
  value = module.relay.dead_letter_queue_url
}
