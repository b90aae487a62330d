import os
import urllib.parse

import boto3

s3 = boto3.client("s3")


def lambda_handler(event, context):
    """Writes a "thumbnail" (the first 16 bytes: no image library needed here) of each uploaded image."""
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=os.environ["DESTINATION_BUCKET"], Key=f"thumb-{key}", Body=data[:16])
