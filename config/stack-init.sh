#!/bin/sh
# The AWS resources config/stack.yaml reads and writes, created in the AWS emulator of docker-compose.yml by its
# one-shot `aws-init` service (the amazon/aws-cli image). Kafka creates its topics on first use, and the hub declares
# nothing on RabbitMQ: the `tasks` queue is declared by the mapping (`declare: true`).
set -eu
aws="aws --endpoint-url ${AWS_ENDPOINT_URL:-http://aws:5000}"

tries=0
until $aws sqs list-queues >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "the AWS emulator did not answer within 60s" >&2; exit 1; }
  sleep 1
done

# sqs: `jobs`; kinesis: `clicks` and its on-failure queue
$aws sqs create-queue --queue-name jobs
$aws sqs create-queue --queue-name clicks-failures
$aws kinesis create-stream --stream-name clicks --shard-count 2

# dynamodb: the `customers` table, with the stream the mapping reads
$aws dynamodb create-table --table-name customers \
  --attribute-definitions AttributeName=id,AttributeType=S --key-schema AttributeName=id,KeyType=HASH \
  --billing-mode PAY_PER_REQUEST --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES

# s3: the `uploads` bucket, whose object-created notifications go to the `upload-events` queue the mapping reads
$aws s3api create-bucket --bucket uploads
queue_url=$($aws sqs create-queue --queue-name upload-events --query QueueUrl --output text)
queue_arn=$($aws sqs get-queue-attributes --queue-url "$queue_url" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)
$aws s3api put-bucket-notification-configuration --bucket uploads --notification-configuration \
  "{\"QueueConfigurations\": [{\"QueueArn\": \"$queue_arn\", \"Events\": [\"s3:ObjectCreated:*\"]}]}"
echo "stack resources ready"
