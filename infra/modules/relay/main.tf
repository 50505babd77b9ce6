# The relay on AWS: Tekton posts to the ingress Function URL, which puts each
# CloudEvent on an EventBridge bus; one rule per provider function invokes
# it; the shared store is DynamoDB; permanent failures go to SQS.

locals {
  functions = toset(var.provider_functions)
  # The ingress marks each event for the functions with a Notification whose
  # filter could want it (detail.relay<function> = "true", the letters and
  # digits of the function's name; functions/src/router.rs), so a function
  # is invoked only for events it has work for.
  events_pattern = {
    for f in local.functions : f => jsonencode({
      source = [var.event_source]
      detail = { "relay${replace(f, "/[^a-z0-9]/", "")}" = ["true"] }
    })
  }
  vpc = length(var.vpc_subnet_ids) > 0
  # The secrets each function may read, as ARNs: ssm://a/b is the parameter
  # /a/b; a Secrets Manager name gets the random suffix AWS adds (-??????).
  arn_prefix = "arn:aws:%s:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
  secret_arns = {
    for f in setunion(local.functions, ["ingress"]) : f => {
      ssm = [
        for r in lookup(var.secrets, f, []) :
        format("${local.arn_prefix}:parameter/%s", "ssm", trimprefix(trimprefix(r, "ssm://"), "/"))
        if startswith(r, "ssm://") && !startswith(r, "ssm://arn:")
      ]
      ssm_arns = [for r in lookup(var.secrets, f, []) : trimprefix(r, "ssm://") if startswith(r, "ssm://arn:")]
      secretsmanager = [
        for r in lookup(var.secrets, f, []) :
        startswith(trimprefix(r, "secretsmanager://"), "arn:")
        ? split("#", trimprefix(r, "secretsmanager://"))[0]
        : format("${local.arn_prefix}:secret:%s-??????", "secretsmanager", split("#", trimprefix(r, "secretsmanager://"))[0])
        if startswith(r, "secretsmanager://")
      ]
    }
  }
  config_parameter = "/${var.name}/relay.yaml"
  # Tracing export is off unless an OTLP/HTTP endpoint is given (e.g. the
  # ADOT collector extension at http://localhost:4318); metrics always go
  # out as EMF log lines under metrics_namespace.
  # The relay binary, RELAY_FUNCTION saying which function it is: one
  # artifact for every provider function (the `providers` feature), one for
  # the ingress (the `ingress` feature); each stays under the size budget,
  # the two together would not (docs/deploy-aws.md).
  provider_artifact = "${var.artifacts_dir}/providers/relay/bootstrap.zip"
  ingress_artifact  = "${var.artifacts_dir}/ingress/relay/bootstrap.zip"
  environment = merge(
    {
      RELAY_CONFIG            = "ssm://${trimprefix(local.config_parameter, "/")}"
      RELAY_LOG               = "info"
      RELAY_METRICS_NAMESPACE = var.metrics_namespace
    },
    var.otlp_endpoint == "" ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT = var.otlp_endpoint },
  )
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

resource "aws_cloudwatch_event_bus" "relay" {
  name = var.name
  tags = var.tags
}

# The store. Its key schema is documented once, in shared/src/delivery/store/dynamodb.rs.
resource "aws_dynamodb_table" "state" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-owned key; it holds delivery bookkeeping (ids, states), no secrets. Set a CMK in a fork if policy demands it.
  name         = "${var.name}-state"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  tags = var.tags
}

resource "aws_sqs_queue" "dead_letters" {
  name                      = "${var.name}-dead-letters"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

# The config, published: every function reads it from here (and re-reads
# it when it changes), so a new Notification needs no rebuild.
resource "aws_ssm_parameter" "config" {
  #checkov:skip=CKV2_AWS_34:The config holds no secrets (credentials are ssm:// or secretsmanager:// references, read when used); a plain String stays readable in the console.
  name  = local.config_parameter
  type  = "String"
  tier  = length(file(var.config_file)) > 4096 ? "Advanced" : "Standard"
  value = file(var.config_file)
  tags  = var.tags
}

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:Logs carry no secrets (a test proves it); CloudWatch encrypts at rest by default.
  #checkov:skip=CKV_AWS_338:Retention is the operator's choice (var.log_retention_days); these are operational logs, not an audit trail.
  for_each          = setunion(local.functions, ["ingress"])
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# --- provider functions -----------------------------------------------------

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

# Least privilege: its own log group, the state table's items, the dead-letter queue.
data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "State"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:DescribeTable"]
    resources = [aws_dynamodb_table.state.arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letters.arn]
  }

  statement {
    sid       = "Config"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.config.arn]
  }

  dynamic "statement" {
    for_each = length(concat(local.secret_arns[each.key].ssm, local.secret_arns[each.key].ssm_arns)) > 0 ? [1] : []
    content {
      sid       = "SecretsSsm"
      actions   = ["ssm:GetParameter"]
      resources = concat(local.secret_arns[each.key].ssm, local.secret_arns[each.key].ssm_arns)
    }
  }

  dynamic "statement" {
    for_each = length(local.secret_arns[each.key].secretsmanager) > 0 ? [1] : []
    content {
      sid       = "SecretsManager"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns[each.key].secretsmanager
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 && length(lookup(var.secrets, each.key, [])) > 0 ? [1] : []
    content {
      sid       = "SecretsKms"
      actions   = ["kms:Decrypt"]
      resources = var.kms_key_arns
    }
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

# In a VPC, Lambda manages the functions' network interfaces with the role.
resource "aws_iam_role_policy_attachment" "function_vpc" {
  for_each   = local.vpc ? local.functions : toset([])
  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_lambda_function" "provider" {
  #checkov:skip=CKV_AWS_117:In a VPC only when the operator names subnets (vpc_subnet_ids: to reach self-hosted providers); the public provider APIs need none.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the operator owns; the zip is built from source by cargo lambda.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (the config's parameter, a log level, the table and queue); credentials are SSM or Secrets Manager references, read when used.
  #checkov:skip=CKV_AWS_116:Failed invocations go to the dead-letter queue through the on-failure destination (aws_lambda_function_event_invoke_config.provider), whose record says more than a DLQ message; a DeadLetterConfig as well would put every failure on the queue twice.
  for_each      = local.functions
  function_name = "${var.name}-${each.key}"
  role          = aws_iam_role.function[each.key].arn
  runtime       = "provided.al2023"
  architectures = [var.architecture]
  handler       = "bootstrap"
  filename      = local.provider_artifact

  source_code_hash               = filebase64sha256(local.provider_artifact)
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency

  dynamic "vpc_config" {
    for_each = local.vpc ? [1] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = var.vpc_security_group_ids
    }
  }

  environment {
    variables = merge(local.environment, {
      # The providers artifact serves as this provider's function.
      RELAY_FUNCTION = each.key
      # Override spec.store and spec.deadLetter of the packaged relay.yaml.
      RELAY_STORE       = "dynamodb://${aws_dynamodb_table.state.name}?region=${data.aws_region.current.name}"
      RELAY_DEAD_LETTER = "sqs://${aws_sqs_queue.dead_letters.url}"
    })
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  tags = var.tags
}

# Retryable failures: Lambda retries, then the event goes to the queue.
resource "aws_lambda_function_event_invoke_config" "provider" {
  for_each                     = local.functions
  function_name                = aws_lambda_function.provider[each.key].function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = 3600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dead_letters.arn
    }
  }
}

resource "aws_cloudwatch_event_rule" "provider" {
  for_each       = local.functions
  name           = "${var.name}-${each.key}"
  event_bus_name = aws_cloudwatch_event_bus.relay.name
  event_pattern  = local.events_pattern[each.key]
  tags           = var.tags
}

resource "aws_cloudwatch_event_target" "provider" {
  for_each       = local.functions
  rule           = aws_cloudwatch_event_rule.provider[each.key].name
  event_bus_name = aws_cloudwatch_event_bus.relay.name
  arn            = aws_lambda_function.provider[each.key].arn
}

resource "aws_lambda_permission" "provider" {
  for_each      = local.functions
  statement_id  = "AllowEventBridge"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.provider[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.provider[each.key].arn
}

# --- ingress ----------------------------------------------------------------

resource "aws_iam_role" "ingress" {
  name               = "${var.name}-ingress"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

data "aws_iam_policy_document" "ingress" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function["ingress"].arn}:*"]
  }

  statement {
    sid       = "PutEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.relay.arn]
  }

  statement {
    sid       = "Config"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.config.arn]
  }

  dynamic "statement" {
    for_each = length(concat(local.secret_arns["ingress"].ssm, local.secret_arns["ingress"].ssm_arns)) > 0 ? [1] : []
    content {
      sid       = "SecretsSsm"
      actions   = ["ssm:GetParameter"]
      resources = concat(local.secret_arns["ingress"].ssm, local.secret_arns["ingress"].ssm_arns)
    }
  }

  dynamic "statement" {
    for_each = length(local.secret_arns["ingress"].secretsmanager) > 0 ? [1] : []
    content {
      sid       = "SecretsManager"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns["ingress"].secretsmanager
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 && length(lookup(var.secrets, "ingress", [])) > 0 ? [1] : []
    content {
      sid       = "SecretsKms"
      actions   = ["kms:Decrypt"]
      resources = var.kms_key_arns
    }
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "ingress" {
  name   = "${var.name}-ingress"
  role   = aws_iam_role.ingress.id
  policy = data.aws_iam_policy_document.ingress.json
}

resource "aws_lambda_function" "ingress" {
  #checkov:skip=CKV_AWS_117:Tekton reaches the ingress over its Function URL; a VPC protects nothing here.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the operator owns; the zip is built from source by cargo lambda.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (bus name, source, the config's parameter).
  #checkov:skip=CKV_AWS_116:The ingress is invoked synchronously over HTTP; the caller sees failures and retries, so there is nothing to dead-letter.
  function_name = "${var.name}-ingress"
  role          = aws_iam_role.ingress.arn
  runtime       = "provided.al2023"
  architectures = [var.architecture]
  handler       = "bootstrap"
  filename      = local.ingress_artifact

  source_code_hash               = filebase64sha256(local.ingress_artifact)
  memory_size                    = var.memory_mb
  timeout                        = 10
  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = merge(local.environment, {
      RELAY_FUNCTION     = "ingress"
      RELAY_EVENT_BUS    = aws_cloudwatch_event_bus.relay.name
      RELAY_EVENT_SOURCE = var.event_source
    })
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function["ingress"].name
  }

  tags = var.tags
}

resource "aws_lambda_function_url" "ingress" {
  #checkov:skip=CKV_AWS_258:Tekton cannot sign requests with SigV4; the ingress authenticates each request itself (bearer token or HMAC, spec.inboundAuth).
  function_name      = aws_lambda_function.ingress.function_name
  authorization_type = "NONE"
}

# A public Function URL (auth type NONE) answers 403 unless the function's
# resource policy lets anyone invoke it through the URL: lambda:InvokeFunctionUrl
# for auth type NONE and, since October 2025, lambda:InvokeFunction when
# invoked via the Function URL (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html).
# The ingress authenticates every request itself.
resource "aws_lambda_permission" "ingress_url" {
  #checkov:skip=CKV_AWS_301:The ingress is Tekton's public endpoint by design (Tekton cannot sign SigV4); it authenticates every request itself (spec.inboundAuth) and refuses to start without it.
  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.ingress.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "ingress_url_invoke" {
  #checkov:skip=CKV_AWS_301:Only through the Function URL (invoked_via_function_url), which the ingress guards with spec.inboundAuth; without this statement the URL answers 403.
  statement_id             = "FunctionURLInvokeAllowPublicAccess"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.ingress.function_name
  principal                = "*"
  invoked_via_function_url = true
}

# --- the dead-letter queue's alarm ------------------------------------------

# Anything on the queue is a notification that did not arrive: a permanent
# failure (a dead-letter entry) or Lambda's on-failure record of retries
# exhausted. Recover with `relay dlq list|replay --sqs` (docs/deploy-aws.md).
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "tekton-relay notifications wait in ${aws_sqs_queue.dead_letters.name}: relay dlq list --sqs ${aws_sqs_queue.dead_letters.url}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letters.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
  ok_actions          = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
  tags                = var.tags
}
