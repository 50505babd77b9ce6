# The relay in one region with the GitHub and Slack functions.
#
#   pip install cargo-lambda && rustup target add aarch64-unknown-linux-gnu
#   cp examples/github.yaml relay.yaml   # your config, packaged as /var/task/relay.yaml
#   cargo lambda build --profile lambda --arm64 --output-format zip -p relay --include relay.yaml \
#     --no-default-features --features providers --lambda-dir target/lambda/providers
#   cargo lambda build --profile lambda --arm64 --output-format zip -p relay --include relay.yaml \
#     --no-default-features --features ingress --lambda-dir target/lambda/ingress
#   terraform init && terraform apply

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
