output "ingress_url" {
  description = "Point Tekton's config-events sink here."
  value       = aws_lambda_function_url.ingress.function_url
}

output "event_bus_name" {
  value = aws_cloudwatch_event_bus.relay.name
}

output "state_table" {
  description = "Use as the store: dynamodb://<table>?region=<region>."
  value       = aws_dynamodb_table.state.name
}

output "store_url" {
  value = "dynamodb://${aws_dynamodb_table.state.name}?region=${data.aws_region.current.name}"
}

output "dead_letter_queue_url" {
  description = "Use as the dead letter target: sqs://<url>; inspect with `relay dlq list --sqs <url>`."
  value       = aws_sqs_queue.dead_letters.url
}

output "function_names" {
  value = concat([for f in aws_lambda_function.provider : f.function_name], [aws_lambda_function.ingress.function_name])
}

output "account_id" {
  value = data.aws_caller_identity.current.account_id
}
