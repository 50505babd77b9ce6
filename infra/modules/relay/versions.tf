terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # invoked_via_function_url (the Function URL's second permission): 6.29.
      version = ">= 6.29"
    }
  }
}
