#!/usr/bin/env python3
"""The SAM transform, done offline with aws-sam-translator.

    transform.py TEMPLATE OUTPUT [--region us-east-1]

Reads a SAM template (YAML or JSON, long-form or short-form intrinsics), replaces each
AWS::Serverless::Function's local CodeUri with an S3 placeholder
(s3://capstan-artifacts/<binary>.zip, as `sam package` would), runs the same
translator CloudFormation runs for `Transform: AWS::Serverless-2016-10-31`, and writes
the resulting plain CloudFormation template to OUTPUT as JSON.

Why: cfn-lint does not look inside AWS::Serverless::Function (runtime, architectures,
event source mappings); on the transformed template those become AWS::Lambda::Function
and AWS::Lambda::EventSourceMapping, which it checks against their schemas. The IAM
check (check_iam.py) reads the transformed template too.

Exit status: 0 on success; 1 when the template cannot be read or transformed (the
translator's errors are printed, one per line).
"""

import argparse
import json
import os
import sys

ARTIFACT_BUCKET = "capstan-artifacts"


class NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs only when a function uses
    `Policies:` with managed policy names; Capstan's functions take explicit roles."""

    def load(self):
        raise SystemExit(
            "transform: the template names AWS managed policies in a function's Policies; "
            "this offline transform cannot look them up (give the function a Role instead)"
        )


def load_template(path):
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        for m in matches:
            print(f"transform: {path}: {m}", file=sys.stderr)
        raise SystemExit(1)
    # cfn-lint's nodes carry source marks; plain dicts and strings for the translator.
    return json.loads(json.dumps(template))


def with_s3_code(template):
    """Every function's CodeUri as an S3 placeholder named after its binary."""
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.setdefault("Properties", {})
        binary = (
            ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
            or logical_id
        )
        properties["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{binary}.zip"
    return template


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template")
    parser.add_argument("output")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()

    # The translator asks boto3 for the region (ARN partitions, pseudo parameters);
    # no credentials are needed and no call is made.
    os.environ["AWS_DEFAULT_REGION"] = args.region
    os.environ["AWS_REGION"] = args.region

    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    template = with_s3_code(load_template(args.template))
    try:
        transformed = transform(
            template,
            {"AWS::Region": args.region, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"},
            NoManagedPolicies(),
        )
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"transform: {args.template}: {cause.message}", file=sys.stderr)
        return 1
    except Exception as e:  # the translator raises others for malformed input
        print(f"transform: {args.template}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    with open(args.output, "w") as f:
        json.dump(transformed, f, indent=1, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
