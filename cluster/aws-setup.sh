#!/usr/bin/env bash
# One-time AWS set-up for cluster.yaml (run it where the AWS CLI has admin credentials):
#   cluster/aws-setup.sh BUCKET SSH_CIDR [REGION]     e.g. cluster/aws-setup.sh memsweep-alice 203.0.113.7/32
# Creates, if missing:
#  - the S3 bucket BUCKET (the store lives under s3://BUCKET/stores);
#  - the security group `memsweep-ray` in the region's default VPC: SSH (22/tcp) from SSH_CIDR only, and any
#    traffic between the cluster's own nodes; nothing else (the dashboard is reached through `ray dashboard`);
#  - instance profiles `memsweep-head` and `memsweep-worker` whose roles may use BUCKET and no other bucket
#    (iam-head-policy.json: also launches, stops and terminates instances tagged ray-cluster-name=memsweep, with
#    IMDSv2 required; iam-worker-policy.json: the bucket only);
#  - the Ray auth token ~/.ray/auth_token (`ray get-auth-token --generate`), copied to every node by `ray up`.
# It prints the edits cluster.yaml needs (the bucket and the security group id).
set -euo pipefail
BUCKET=${1:?usage: $0 BUCKET SSH_CIDR [REGION]}
CIDR=${2:?usage: $0 BUCKET SSH_CIDR [REGION]}
REGION=${3:-us-west-2}
HERE=$(cd "$(dirname "$0")" && pwd)
ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
export AWS_DEFAULT_REGION=$REGION

aws s3api head-bucket --bucket "$BUCKET" 2>/dev/null || aws s3 mb "s3://$BUCKET" --region "$REGION"

VPC=$(aws ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId' --output text)
SG=$(aws ec2 describe-security-groups --filters Name=group-name,Values=memsweep-ray Name=vpc-id,Values="$VPC" \
     --query 'SecurityGroups[0].GroupId' --output text)
if [ "$SG" = "None" ]; then
  SG=$(aws ec2 create-security-group --group-name memsweep-ray --vpc-id "$VPC" \
       --description "memsweep Ray cluster: SSH from $CIDR, all traffic within the group" --query GroupId --output text)
  aws ec2 authorize-security-group-ingress --group-id "$SG" --protocol tcp --port 22 --cidr "$CIDR"
  aws ec2 authorize-security-group-ingress --group-id "$SG" \
    --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$SG}]"
fi

TRUST='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
for NODE in worker head; do
  NAME=memsweep-$NODE
  aws iam get-role --role-name "$NAME" >/dev/null 2>&1 ||
    aws iam create-role --role-name "$NAME" --assume-role-policy-document "$TRUST" >/dev/null
  sed -e "s/memsweep-CHANGE-ME/$BUCKET/g" -e "s/ACCOUNT-ID/$ACCOUNT/g" "$HERE/iam-$NODE-policy.json" > "/tmp/$NAME.json"
  aws iam put-role-policy --role-name "$NAME" --policy-name "$NAME" --policy-document "file:///tmp/$NAME.json"
  if ! aws iam get-instance-profile --instance-profile-name "$NAME" >/dev/null 2>&1; then
    aws iam create-instance-profile --instance-profile-name "$NAME" >/dev/null
    aws iam add-role-to-instance-profile --instance-profile-name "$NAME" --role-name "$NAME"
  fi
done

test -s ~/.ray/auth_token || ray get-auth-token --generate >/dev/null
chmod 600 ~/.ray/auth_token

cat <<MSG
Done. In cluster.yaml:
  - replace sg-CHANGE-ME by $SG (both node types)
  - replace memsweep-CHANGE-ME by $BUCKET (MEMSWEEP_STORE)
  - provider.region: $REGION
MSG
