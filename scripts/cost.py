#!/usr/bin/env python3
"""What an idle Capstan installation costs per month, computed from infra/template.yaml.

    python3 scripts/cost.py [infra/template.yaml] [--max DOLLARS]

Counts what the template declares (alarms, SQS event source mappings, the sweep's
schedules, queues, log groups) and prices it with AWS's us-east-1 list prices, without
free tiers (an account's free tier is shared by everything in it). Prints the
installation as the template has it; with --max, exits 1 when the monthly total is
above DOLLARS (issue 16: below $1). To compare with an older layout, run it on that
template (`git show REV:infra/template.yaml > old.yaml`).

Every figure is an estimate: AWS does not publish how many pollers an idle SQS event
source mapping keeps; the sweep's duration and log volume are assumptions (stated).
"""

import re
import sys

import yaml

# us-east-1 list prices (checked 2026-12-01):
# https://aws.amazon.com/cloudwatch/pricing/  standard-resolution alarm, per alarm metric
ALARM = 0.10
# https://aws.amazon.com/sqs/pricing/  standard queue, per request (after the free tier)
SQS_REQUEST = 0.40 / 1e6
# https://aws.amazon.com/lambda/pricing/  arm64
LAMBDA_REQUEST = 0.20 / 1e6
LAMBDA_GB_SECOND = 0.0000133334
# https://aws.amazon.com/dynamodb/pricing/on-demand/  read request unit
DYNAMODB_RRU = 0.125 / 1e6
# https://aws.amazon.com/cloudwatch/pricing/  log ingestion per GB
LOG_GB = 0.50

MINUTES_PER_MONTH = 730 * 60
# Lambda long-polls each SQS source with ReceiveMessage waiting up to 20 s
# (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html). Assumed: 5 pollers per
# idle mapping (the documented starting concurrency; AWS does not publish the idle count).
POLLERS = 5
WAIT_SECONDS = 20
# Each scheduled run (the sweep, the autoscale check), assumed: 0.3 s, 1.5 KB of logs.
SWEEP_SECONDS = 0.3
LOG_BYTES_PER_RUN = 1536


class Loader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


Loader.add_multi_constructor("!", _any_tag)


def count(template):
    resources = template.get("Resources", {})
    alarms = [n for n, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    queues = [n for n, r in resources.items() if r.get("Type") == "AWS::SQS::Queue"]
    log_groups = [n for n, r in resources.items() if r.get("Type") == "AWS::Logs::LogGroup"]
    mappings, schedules, memory = [], [], {}
    globals_memory = template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    for name, r in resources.items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        props = r.get("Properties", {})
        memory[name] = props.get("MemorySize", globals_memory)
        for event in (props.get("Events") or {}).values():
            kind = event.get("Type")
            if kind == "SQS":
                mappings.append(name)
            elif kind == "Schedule":
                schedules.append((name, event.get("Properties", {}).get("Schedule", "")))
    return {
        "alarms": alarms,
        "queues": queues,
        "log_groups": log_groups,
        "mappings": mappings,
        "schedules": schedules,
        "memory": memory,
    }


def runs_per_month(expression):
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression.strip())
    if not m:
        raise SystemExit(f"cannot read schedule {expression!r}: only rate(N minutes|hours)")
    every = int(m.group(1)) * (60 if m.group(2).startswith("hour") else 1)
    return MINUTES_PER_MONTH / every


def rows(alarms, mappings, schedules, memory_mb):
    polls = mappings * POLLERS * (60 / WAIT_SECONDS) * MINUTES_PER_MONTH
    runs = sum(runs_per_month(s) for s in schedules)
    gb_seconds = runs * SWEEP_SECONDS * memory_mb / 1024
    return [
        ("alarms", f"{alarms} × ${ALARM:.2f}", alarms * ALARM),
        (
            "SQS empty receives",
            f"{mappings} mappings × {POLLERS} pollers × {60 // WAIT_SECONDS}/min = "
            f"{polls:,.0f} requests",
            polls * SQS_REQUEST,
        ),
        ("scheduled invocations", f"{runs:,.0f} runs (the sweep and the autoscale check)", runs * LAMBDA_REQUEST),
        (
            "scheduled compute",
            f"{SWEEP_SECONDS} s at {memory_mb} MB: {gb_seconds:,.0f} GB-s",
            gb_seconds * LAMBDA_GB_SECOND,
        ),
        ("Scan", f"{runs:,.0f} RRU (an empty table)", runs * DYNAMODB_RRU),
        (
            "logs",
            f"{LOG_BYTES_PER_RUN / 1024:.1f} KB per run",
            runs * LOG_BYTES_PER_RUN / 2**30 * LOG_GB,
        ),
    ]


def table(title, lines):
    out = [f"#### {title}", "", "| item | how it is counted | $/month |", "|---|---|---|"]
    for item, how, dollars in lines:
        out.append(f"| {item} | {how} | {dollars:.3f} |")
    total = sum(d for _, _, d in lines)
    out.append(f"| **total** | | **{total:.2f}** |")
    return "\n".join(out), total


def main(argv):
    values = {argv[i + 1] for i, a in enumerate(argv) if a == "--max" and i + 1 < len(argv)}
    path = next((a for a in argv if not a.startswith("--") and a not in values), "infra/template.yaml")
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=Loader)
    c = count(template)
    sweep_fn = c["schedules"][0][0] if c["schedules"] else None
    memory = c["memory"].get(sweep_fn, 128) if sweep_fn else 128
    schedules = [s for _, s in c["schedules"]]
    print(
        f"{path}: {len(c['alarms'])} alarms, {len(c['queues'])} queues, "
        f"{len(c['mappings'])} SQS event source mappings ({', '.join(c['mappings'])}), "
        f"{len(c['log_groups'])} log groups, schedules {schedules}\n"
    )
    now, now_total = table(
        "As the template has it", rows(len(c["alarms"]), len(c["mappings"]), schedules, memory)
    )
    print(now + "\n")
    print(f"idle: ${now_total:.2f}/month")
    limit = next((float(argv[i + 1]) for i, a in enumerate(argv) if a == "--max" and i + 1 < len(argv)), None)
    if limit is not None and now_total > limit:
        print(f"above the limit of ${limit:.2f}/month", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
