def lambda_handler(event, context):
    raise RuntimeError("the report cannot be made")
