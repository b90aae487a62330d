"""Example Lambda handlers, written exactly as for AWS Lambda."""
