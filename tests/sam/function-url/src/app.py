import json
import os


def lambda_handler(event, context):
    """Answers with what API Gateway (or the function URL) handed it, as an HTTP handler written for Lambda does."""
    request = event.get("requestContext", {})
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {
                "version": event.get("version", "1.0"),
                "routeKey": event.get("routeKey") or event.get("resource"),
                "path": event.get("rawPath") or event.get("path"),
                "method": (request.get("http") or {}).get("method") or event.get("httpMethod"),
                "pathParameters": event.get("pathParameters"),
                "query": event.get("queryStringParameters"),
                "body": event.get("body"),
                "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
            }
        ),
    }
