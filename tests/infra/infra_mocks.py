"""Pulumi mocks for the infra tests: every output the program reads, and a record of inputs."""

from __future__ import annotations

from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "us-east-1"
STREAM_LABEL = "2024-01-01T00:00:00.000"


class PipelineMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        # logical name -> (type token, inputs as declared, camelCase)
        self.resources: dict[str, tuple[str, dict[str, Any]]] = {}
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = (args.typ, dict(args.inputs))
        out = dict(args.inputs)
        name = str(args.inputs.get("name") or f"{args.name}-1a2b3c")
        match args.typ:
            case "aws:dynamodb/table:Table":
                arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
                out |= {"arn": arn, "name": name}
                if args.inputs.get("streamEnabled"):
                    out["streamArn"] = f"{arn}/stream/{STREAM_LABEL}"
            case "aws:sqs/queue:Queue":
                out |= {
                    "arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                    "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
                    "name": name,
                }
            case "aws:s3/bucket:Bucket":
                out |= {"bucket": name, "arn": f"arn:aws:s3:::{name}"}
            case "aws:lambda/function:Function":
                out |= {"arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}", "name": name}
            case "aws:lambda/layerVersion:LayerVersion":
                out["arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{args.inputs['layerName']}:1"
            case "aws:iam/role:Role":
                out |= {"arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "name": name}
            case "aws:cloudwatch/logGroup:LogGroup":
                out["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
            case "aws:cloudwatch/metricAlarm:MetricAlarm":
                out["arn"] = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"
        return f"{args.name}-id", out

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(args.token)
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION}, []
        if args.token == "aws:dynamodb/getTable:getTable":
            name = args.args["name"]
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
            return {
                "arn": arn,
                "name": name,
                "streamArn": f"{arn}/stream/{STREAM_LABEL}",
                "streamEnabled": True,
                "streamViewType": "NEW_AND_OLD_IMAGES",
            }, []
        return {}, []

    def of_type(self, typ: str, prefix: str) -> dict[str, dict[str, Any]]:
        return {
            n: inputs
            for n, (t, inputs) in self.resources.items()
            if t == typ and n.startswith(prefix)
        }


MOCKS = PipelineMocks()
