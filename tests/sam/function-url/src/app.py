import json


def lambda_handler(event, context):
    """Echoes what it received."""
    records = event.get("Records", [])
    return {"statusCode": 200, "body": json.dumps({"records": len(records)})}
