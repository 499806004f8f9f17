#!/usr/bin/env python3
"""Checks every IAM policy of a (SAM-transformed) CloudFormation template.

    check_iam.py TRANSFORMED_TEMPLATE.json [--policies DIR] [--dump DIR]

1. Extracts each policy document (roles' inline policies, AWS::IAM::Policy and
   ::ManagedPolicy, SQS queue policies) and resolves its intrinsics to placeholder
   values (account 123456789012, region us-east-1, partition aws, each parameter's
   default or a placeholder of its type, resource names and ARNs from the resources'
   own properties), so that each is a plain JSON policy.

2. Runs parliament on each identity policy, and on every *.json under --policies.
   Any finding fails the check, whatever its severity: parliament rates a misspelled
   action (UNKNOWN_ACTION) or a needless Resource "*" (RESOURCE_STAR) LOW, yet both are
   real mistakes in a policy this small. The only exceptions are the findings
   `accepted()` explains (RunInstances split over several statements; PassRole with
   RunInstances, which a machine controller cannot do without). Queue policies are
   resource policies, outside what parliament's auditors read: the project's rules
   below check them instead.

3. Enforces Capstan's own least-privilege rules, which parliament cannot know:
   - no Allow of "*" or of a whole service ("ec2:*", "dynamodb:*"...), no NotAction,
     no NotResource;
   - ec2:TerminateInstances and every other mutation of existing instances only with
     aws:ResourceTag/capstan.dev/installation = the installation;
   - ec2:RunInstances on instance, volume, network-interface and spot-request ARNs only
     with aws:RequestTag/capstan.dev/installation = the installation;
   - IAM backs the secure defaults: ec2:RunInstances on instance ARNs only with
     ec2:MetadataHttpTokens = required (IMDSv2), on volume ARNs only with
     ec2:Encrypted = true, on image ARNs only with ec2:Owner = the AllowedImageOwners
     parameter (which must exist);
   - ec2:CreateTags only with ec2:CreateAction (tagging as part of a launch) and the
     same request tag, or on instances with the installation's resource tag and never
     on Capstan's own tag keys (aws:TagKeys);
   - iam:PassRole only with iam:PassedToService, on a named role (no wildcard);
   - Resource "*" only for actions that have no resource-level permissions;
   - workload-cluster access: eks:DescribeCluster never on Resource "*" (EKS cluster
     ARNs only), secretsmanager:GetSecretValue never on "*" and only on the secrets the
     KubeconfigSecretArns parameter lists. The parameters that switch on conditional
     statements (KubeconfigSecretArns, WorkloadSubnetIds, WorkloadSecurityGroupIds)
     are resolved as set (AS_SET), so that those statements are checked too;
   - DynamoDB actions only on the template's tables, their indexes and streams;
     dynamodb:Scan (and PartiQL selects) only in the drift sweep's role;
   - events:PutEvents only on the template's buses; SQS actions only on the
     template's queues, and a function receives only from the queues its event
     source mappings read;
   - roles carry no managed policies (what they allow could not be checked here);
   - queue policies: every queue an EventBridge rule feeds has one; it allows
     sqs:SendMessage only to events.amazonaws.com with aws:SourceArn = that rule, and
     a Deny (Principal "*") refuses sqs:SendMessage to everyone else: its only
     exemptions are the rules (aws:SourceArn) and the roles whose own policies allow
     them to send to the queue (aws:PrincipalArn; the reconcilers' Bus::requeue on the
     work queue), and it must exempt both, or it would refuse the deliveries and
     re-queues the functions rely on;
   - lambda:InvokeFunction only on the template's own functions, named (no wildcard).

Exit status 0 when every policy passes; 1 with one line per problem otherwise.
"""

import argparse
import copy
import fnmatch
import glob
import json
import os
import re
import sys
import warnings

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
INSTALLATION_TAG = "capstan.dev/installation"
SWEEP_BINARY = "drift-sweep"

# EC2 actions that change (or expose the data of) an instance that already exists.
INSTANCE_MUTATIONS = [
    "ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances",
    "ec2:RebootInstances", "ec2:ModifyInstanceAttribute",
    "ec2:ModifyInstanceMetadataOptions", "ec2:ModifyInstancePlacement",
    "ec2:ModifyInstanceMaintenanceOptions", "ec2:ModifyInstanceCapacityReservationAttributes",
    "ec2:ModifyInstanceCreditSpecification", "ec2:ModifyInstanceEventStartTime",
    "ec2:AssociateIamInstanceProfile", "ec2:ReplaceIamInstanceProfileAssociation",
    "ec2:DisassociateIamInstanceProfile", "ec2:AttachVolume", "ec2:DetachVolume",
    "ec2:AttachNetworkInterface", "ec2:DetachNetworkInterface", "ec2:CreateImage",
    "ec2:SendDiagnosticInterrupt", "ec2:GetPasswordData", "ec2:DeleteTags",
    "ec2:MonitorInstances", "ec2:UnmonitorInstances",
]
# What RunInstances creates, whose ARNs must only be allowed with the request tag.
LAUNCHED = {
    "instance": "instance/i-0123456789abcdef0",
    "volume": "volume/vol-0123456789abcdef0",
    "network-interface": "network-interface/eni-0123456789abcdef0",
    "spot-instances-request": "spot-instances-request/sir-01234567",
}
IMAGE = f"arn:{PARTITION}:ec2:{REGION}::image/ami-0123456789abcdef0"
IMAGE_OWNERS_PARAMETER = "AllowedImageOwners"
SCANS = ["dynamodb:Scan", "dynamodb:PartiQLSelect"]
RECEIVES = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
STRING_EQUALS = ("StringEquals", "StringEqualsIgnoreCase")
ARN_EQUALS = ("ArnEquals", "ArnLike", "StringEquals")
# The operators under which a Deny's condition exempts the values it names (true when
# the key is absent from the request, so the Deny applies to whoever lacks it).
NEGATED = tuple(
    op + suffix
    for op in ("ArnNotEquals", "ArnNotLike", "StringNotEquals", "StringNotLike")
    for suffix in ("", "IfExists")
)
EVENTS = "events.amazonaws.com"
SECRETS_PARAMETER = "KubeconfigSecretArns"
# Parameters empty by default that switch statements on: checked as if set, so that
# what they switch on is checked too (with their defaults, those statements vanish).
AS_SET = {
    SECRETS_PARAMETER: [
        f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:capstan/demo-kubeconfig-AbCdEf",
    ],
    "WorkloadSubnetIds": ["subnet-0123456789abcdef2"],
    "WorkloadSecurityGroupIds": ["sg-0123456789abcdef2"],
}


class Unresolvable(Exception):
    pass


NO_VALUE = object()


# ---------------------------------------------------------------- resolving intrinsics


class Resolver:
    def __init__(self, template):
        self.t = template
        self.resources = template.get("Resources") or {}
        self.params = {}
        for name, p in (template.get("Parameters") or {}).items():
            self.params[name] = self.placeholder(name, p)
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "capstan-stack",
            "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/capstan-stack/00000000-0000-0000-0000-000000000000",
            "AWS::NotificationARNs": [],
        }
        self.conditions = {}

    @staticmethod
    def placeholder(name, p):
        if name in AS_SET:
            return list(AS_SET[name])
        if "Default" in p:
            default = p["Default"]
            if str(p.get("Type", "")).startswith(("List<", "CommaDelimitedList")):
                return [s.strip() for s in str(default).split(",") if s.strip()]
            return str(default) if not isinstance(default, (int, float)) else default
        kind = str(p.get("Type", "String"))
        lists = {
            "List<AWS::EC2::Subnet::Id>": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
            "List<AWS::EC2::SecurityGroup::Id>": ["sg-0123456789abcdef0"],
        }
        if kind in lists:
            return lists[kind]
        if kind.startswith("List<") or kind == "CommaDelimitedList":
            return [f"placeholder-{name.lower()}"]
        if kind == "Number":
            return 1
        return f"placeholder-{name.lower()}"

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve((self.t.get("Conditions") or {})[name]))
        return self.conditions[name]

    def name_of(self, logical_id):
        """What Ref gives for a resource (its physical name or id)."""
        r = self.resources.get(logical_id)
        if r is None:
            raise Unresolvable(f"Ref to unknown {logical_id}")
        props = r.get("Properties") or {}
        kind = r.get("Type")
        key = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Events::EventBus": "Name",
            "AWS::Events::Rule": "Name",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::IAM::Role": "RoleName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SNS::Topic": "TopicName",
        }.get(kind)
        name = self.resolve(props[key]) if key and key in props else f"{logical_id}-placeholder"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return name

    def get_att(self, logical_id, attribute):
        r = self.resources.get(logical_id)
        if r is None:
            raise Unresolvable(f"GetAtt of unknown {logical_id}")
        kind = r.get("Type")
        props = r.get("Properties") or {}
        name = self.name_of(logical_id)
        p, a = PARTITION, ACCOUNT
        if kind == "AWS::SQS::Queue":
            queue = name.rsplit("/", 1)[1]
            return {"Arn": f"arn:{p}:sqs:{REGION}:{a}:{queue}", "QueueName": queue, "QueueUrl": name}[attribute]
        if kind == "AWS::DynamoDB::Table":
            # A real stream label is a timestamp with colons ("2026-01-01T00:00:00.000"),
            # which parliament's ARN parser splits on; the placeholder keeps its shape.
            arn = f"arn:{p}:dynamodb:{REGION}:{a}:table/{name}"
            return {"Arn": arn, "StreamArn": f"{arn}/stream/2026-01-01T00.00.00.000"}[attribute]
        if kind == "AWS::Events::EventBus" and attribute in ("Arn", "Name"):
            return f"arn:{p}:events:{REGION}:{a}:event-bus/{name}" if attribute == "Arn" else name
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            bus = self.resolve(props.get("EventBusName", "default"))
            bus = bus.rsplit("/", 1)[-1]
            prefix = "" if bus == "default" else f"{bus}/"
            return f"arn:{p}:events:{REGION}:{a}:rule/{prefix}{name}"
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:{p}:logs:{REGION}:{a}:log-group:{name}:*"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:{p}:iam::{a}:role/{name}"
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:{p}:lambda:{REGION}:{a}:function:{name}"
        if kind == "AWS::SNS::Topic" and attribute == "TopicArn":
            return f"arn:{p}:sns:{REGION}:{a}:{name}"
        raise Unresolvable(f"Fn::GetAtt {logical_id}.{attribute} ({kind})")

    def sub(self, text, variables):
        def one(m):
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                value = variables[expr]
            elif expr in self.params:
                value = self.params[expr]
            elif expr in self.pseudo:
                value = self.pseudo[expr]
            elif "." in expr:
                logical_id, attribute = expr.split(".", 1)
                value = self.get_att(logical_id, attribute)
            else:
                value = self.name_of(expr)
            if isinstance(value, list):
                raise Unresolvable(f"Fn::Sub of the list {expr}")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, v):
        if isinstance(v, list):
            out = [self.resolve(x) for x in v]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in self.params:
                    return copy.deepcopy(self.params[arg])
                if arg in self.pseudo:
                    return self.pseudo[arg]
                return self.name_of(arg)
            if k == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, self.resolve(attribute))
            if k == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {n: self.resolve(x) for n, x in variables.items()})
            if k == "Fn::Join":
                sep, items = arg
                return self.resolve(sep).join(str(x) for x in self.resolve(items))
            if k == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if k == "Fn::Split":
                sep, text = arg
                return self.resolve(text).split(self.resolve(sep))
            if k == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if k == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return a == b
            if k == "Fn::Not":
                return not self.resolve(arg[0])
            if k == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if k == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
            if k == "Fn::FindInMap":
                m, a, b = (self.resolve(x) for x in arg)
                return self.t["Mappings"][m][a][b]
            if k == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
            if k == "Fn::ImportValue":
                return f"placeholder-import-{self.resolve(arg)}"
        out = {}
        for k, x in v.items():
            r = self.resolve(x)
            if r is not NO_VALUE:
                out[k] = r
        return out


# ---------------------------------------------------------------- policies


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def action_matches(pattern, action):
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def allows(statement, action):
    return any(action_matches(p, action) for p in as_list(statement.get("Action")))


def resource_matches(pattern, arn):
    return fnmatch.fnmatchcase(arn, pattern)


def condition_value(statement, operators, key):
    """The values a condition compares `key` with under any of `operators` (keys are
    case-insensitive in IAM), or None."""
    for op, block in (statement.get("Condition") or {}).items():
        if op not in operators:
            continue
        for k, v in block.items():
            if k.lower() == key.lower():
                return as_list(v)
    return None


def load_iam_definition():
    import parliament

    return {s["prefix"]: {p["privilege"].lower(): p for p in s["privileges"]} for s in parliament.iam_definition}


def has_resource_types(definition, action):
    """Whether `action` (no wildcard) supports resource-level permissions."""
    service, name = action.split(":", 1)
    privilege = definition.get(service.lower(), {}).get(name.lower())
    if privilege is None:
        return True  # unknown: parliament reports it; treat as restrictable
    return any(r["resource_type"] for r in privilege["resource_types"])


class Checker:
    def __init__(self, template, resolver, definition):
        self.t = template
        self.r = resolver
        self.definition = definition
        self.problems = []
        self.installation = resolver.params.get("InstallationName", "capstan")
        res = template.get("Resources") or {}
        self.tables = [resolver.get_att(i, "Arn") for i, x in res.items() if x.get("Type") == "AWS::DynamoDB::Table"]
        self.buses = [resolver.get_att(i, "Arn") for i, x in res.items() if x.get("Type") == "AWS::Events::EventBus"]
        self.queues = [resolver.get_att(i, "Arn") for i, x in res.items() if x.get("Type") == "AWS::SQS::Queue"]
        self.functions = [resolver.get_att(i, "Arn") for i, x in res.items() if x.get("Type") == "AWS::Lambda::Function"]
        # Which functions use each role, and which queues they read.
        self.role_functions = {}
        self.function_queues = {}
        for logical_id, x in res.items():
            if x.get("Type") == "AWS::Lambda::Function":
                role = (x.get("Properties") or {}).get("Role")
                if isinstance(role, dict) and "Fn::GetAtt" in role:
                    target = role["Fn::GetAtt"]
                    target = target[0] if isinstance(target, list) else target.split(".")[0]
                    self.role_functions.setdefault(target, []).append(logical_id)
            if x.get("Type") == "AWS::Lambda::EventSourceMapping":
                props = x.get("Properties") or {}
                fn = props.get("FunctionName")
                fn = fn.get("Ref") if isinstance(fn, dict) else fn
                source = resolver.resolve(props.get("EventSourceArn"))
                if isinstance(source, str) and ":sqs:" in source:
                    self.function_queues.setdefault(fn, []).append(source)
        # Queue URL -> ARN (a QueuePolicy names its queues by URL), which rules feed each
        # queue, and which roles re-queue on a queue they read (Bus::requeue).
        self.queue_arns = {
            resolver.name_of(i): resolver.get_att(i, "Arn")
            for i, x in res.items() if x.get("Type") == "AWS::SQS::Queue"
        }
        self.queue_rules = {}
        for logical_id, x in res.items():
            if x.get("Type") == "AWS::Events::Rule":
                for target in as_list((x.get("Properties") or {}).get("Targets")):
                    arn = resolver.resolve(target.get("Arn"))
                    if arn in self.queues:
                        self.queue_rules.setdefault(arn, []).append(resolver.get_att(logical_id, "Arn"))
        # Which roles' own policies allow sqs:SendMessage on each queue (Bus::requeue on
        # the work queue; on-failure destinations on the dead-letter queue).
        self.queue_requeuers = {}
        for logical_id, x in res.items():
            if x.get("Type") != "AWS::IAM::Role":
                continue
            read = self.queues
            try:
                policies = as_list(resolver.resolve((x.get("Properties") or {}).get("Policies")))
            except Unresolvable:
                policies = []  # reported when the role's policies are checked
            for p in policies:
                try:
                    doc = resolver.resolve(p.get("PolicyDocument") or {})
                except Unresolvable:
                    continue  # reported when the role's policies are checked
                for s in as_list(doc.get("Statement")):
                    if s.get("Effect") != "Allow" or not allows(s, "sqs:SendMessage"):
                        continue
                    for q in read:
                        if any(resource_matches(str(r), q) for r in as_list(s.get("Resource"))):
                            role_arn = resolver.get_att(logical_id, "Arn")
                            senders = self.queue_requeuers.setdefault(q, [])
                            if role_arn not in senders:
                                senders.append(role_arn)

    def problem(self, where, text):
        self.problems.append(f"{where}: {text}")

    def binary_of(self, function_id):
        md = (self.t["Resources"][function_id].get("Metadata") or {}).get("BuildProperties") or {}
        return md.get("Binary") or function_id

    def check_identity_policy(self, where, doc, role_id=None):
        functions = self.role_functions.get(role_id, []) if role_id else []
        is_sweep = any(self.binary_of(f) == SWEEP_BINARY for f in functions)
        own_queues = [q for f in functions for q in self.function_queues.get(f, [])]
        for i, s in enumerate(as_list(doc.get("Statement"))):
            here = f"{where} statement {s.get('Sid') or i}"
            if s.get("Effect") != "Allow":
                continue
            if "NotAction" in s:
                self.problem(here, "Allow with NotAction allows everything not listed")
            if "NotResource" in s:
                self.problem(here, "Allow with NotResource allows everything not listed")
            actions = as_list(s.get("Action"))
            resources = [str(x) for x in as_list(s.get("Resource"))]
            for a in actions:
                if a == "*" or a.endswith(":*"):
                    self.problem(here, f"allows {a!r}: name the actions")
            # Resource "*" only where the action cannot be scoped.
            if "*" in resources:
                for a in actions:
                    if "*" not in a and has_resource_types(self.definition, a):
                        self.problem(here, f"{a} on Resource \"*\" although it can be scoped to resources")
            # Workload-cluster access: named clusters, and the listed secrets only.
            if allows(s, "eks:DescribeCluster"):
                for x in resources:
                    if x == "*" or not x.startswith(f"arn:{PARTITION}:eks:") or ":cluster/" not in x:
                        self.problem(here, f"eks:DescribeCluster on Resource {x!r}: only EKS cluster ARNs (arn:${{AWS::Partition}}:eks:<region>:${{AWS::AccountId}}:cluster/<name>)")
            if allows(s, "secretsmanager:GetSecretValue"):
                listed = as_list(self.r.params.get(SECRETS_PARAMETER))
                for x in resources:
                    if x not in listed:
                        self.problem(here, f"secretsmanager:GetSecretValue on Resource {x!r}: only the secrets the {SECRETS_PARAMETER} parameter lists ({listed})")
            # Instance mutations need the installation's resource tag.
            for a in INSTANCE_MUTATIONS:
                if allows(s, a):
                    tag = condition_value(s, STRING_EQUALS, f"aws:ResourceTag/{INSTALLATION_TAG}") or \
                        condition_value(s, STRING_EQUALS, f"ec2:ResourceTag/{INSTALLATION_TAG}")
                    if tag != [self.installation]:
                        self.problem(here, f"{a} without the condition aws:ResourceTag/{INSTALLATION_TAG} = {self.installation!r}")
            # RunInstances creating tagged resources needs the request tag.
            if allows(s, "ec2:RunInstances"):
                for kind, suffix in LAUNCHED.items():
                    arn = f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:{suffix}"
                    if any(resource_matches(p, arn) for p in resources):
                        tag = condition_value(s, STRING_EQUALS, f"aws:RequestTag/{INSTALLATION_TAG}")
                        if tag != [self.installation]:
                            self.problem(here, f"ec2:RunInstances on {kind} resources without the condition aws:RequestTag/{INSTALLATION_TAG} = {self.installation!r}")
                # The secure defaults, whatever the MachineClass (or a raw item) says.
                def covers(arn):
                    return any(resource_matches(p, arn) for p in resources)

                if covers(f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:{LAUNCHED['instance']}"):
                    if condition_value(s, STRING_EQUALS, "ec2:MetadataHttpTokens") != ["required"]:
                        self.problem(here, "ec2:RunInstances on instance resources without the condition ec2:MetadataHttpTokens = 'required' (IMDSv2)")
                if covers(f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:{LAUNCHED['volume']}"):
                    encrypted = condition_value(s, ("Bool",), "ec2:Encrypted")
                    if [str(v).lower() for v in encrypted or []] != ["true"]:
                        self.problem(here, "ec2:RunInstances on volume resources without the condition Bool ec2:Encrypted = true")
                if covers(IMAGE):
                    owners = condition_value(s, STRING_EQUALS, "ec2:Owner")
                    allowed = self.r.params.get(IMAGE_OWNERS_PARAMETER)
                    if allowed is None:
                        self.problem(here, f"ec2:RunInstances on images, but the template has no {IMAGE_OWNERS_PARAMETER} parameter for the condition ec2:Owner")
                    elif owners is None or sorted(owners) != sorted(as_list(allowed)):
                        self.problem(here, f"ec2:RunInstances on image resources without the condition ec2:Owner = the {IMAGE_OWNERS_PARAMETER} parameter ({as_list(allowed)}), found {owners}")
            # CreateTags either while launching, with the request tag, or on instances
            # already this installation's, never on Capstan's own tag keys.
            if allows(s, "ec2:CreateTags"):
                if condition_value(s, STRING_EQUALS, "ec2:CreateAction"):
                    if condition_value(s, STRING_EQUALS, f"aws:RequestTag/{INSTALLATION_TAG}") != [self.installation]:
                        self.problem(here, f"ec2:CreateTags without the condition aws:RequestTag/{INSTALLATION_TAG} = {self.installation!r}")
                else:
                    if condition_value(s, STRING_EQUALS, f"aws:ResourceTag/{INSTALLATION_TAG}") != [self.installation]:
                        self.problem(here, f"ec2:CreateTags outside a launch without the condition aws:ResourceTag/{INSTALLATION_TAG} = {self.installation!r}")
                    keys = condition_value(s, ("ForAllValues:StringNotLike", "ForAllValues:StringNotEquals"), "aws:TagKeys") or []
                    if INSTALLATION_TAG not in keys and "capstan.dev/*" not in keys:
                        self.problem(here, f"ec2:CreateTags outside a launch may change {INSTALLATION_TAG}: add ForAllValues:StringNotLike aws:TagKeys [capstan.dev/*]")
            # PassRole: a named role, to a named service.
            if allows(s, "iam:PassRole"):
                if not condition_value(s, STRING_EQUALS, "iam:PassedToService"):
                    self.problem(here, "iam:PassRole without the condition iam:PassedToService")
                if any("*" in x for x in resources):
                    self.problem(here, f"iam:PassRole on {resources}: name the role")
            # DynamoDB: this template's tables only; Scan only in the sweep.
            for a in SCANS:
                if allows(s, a) and not is_sweep:
                    self.problem(here, f"{a} outside the drift sweep's role")
            if any(x.lower().startswith("dynamodb:") for x in actions):
                scoped = [a for a in actions if "*" in a or has_resource_types(self.definition, a)]
                for x in resources:
                    if x == "*" and not scoped:
                        continue
                    if not any(x == t or x.startswith(t + "/index/") or x.startswith(t + "/stream/") for t in self.tables):
                        self.problem(here, f"DynamoDB actions on {x}, not one of the template's tables, indexes or streams")
            # EventBridge: this template's buses only.
            if allows(s, "events:PutEvents"):
                for x in resources:
                    if x not in self.buses:
                        self.problem(here, f"events:PutEvents on {x}, not one of the template's buses")
            # Lambda: only this template's functions, each named.
            if allows(s, "lambda:InvokeFunction"):
                for x in resources:
                    if x not in self.functions:
                        self.problem(here, f"lambda:InvokeFunction on {x!r}: only the template's own functions, named")
            # SQS: this template's queues; receive only from the function's own sources.
            if any(x.lower().startswith("sqs:") for x in actions):
                for x in resources:
                    if x not in self.queues:
                        self.problem(here, f"SQS actions on {x}, not one of the template's queues")
                for a in RECEIVES:
                    if allows(s, a) and role_id:
                        for x in resources:
                            if x not in own_queues:
                                self.problem(here, f"{a} on {x}, which no event source mapping of {functions or 'this role'} reads")

    def check_queue_policy(self, logical_id, props, doc):
        """Only the queue's rule, and the roles that re-queue on it, may send to it: the
        policy's Allows are for EventBridge from that rule only, and a Deny refuses
        everyone else (whatever their own identity policies allow)."""
        statements = as_list(doc.get("Statement"))
        for i, s in enumerate(statements):
            here = f"{logical_id} statement {s.get('Sid') or i}"
            principal = json.dumps(s.get("Principal"))
            if s.get("Effect") == "Allow" and ('"*"' in principal or '"AWS"' in principal):
                self.problem(here, f"queue policy allows principal {principal}")
            if s.get("Effect") == "Allow" and not (s.get("Condition") or {}):
                self.problem(here, "queue policy statement without a condition (aws:SourceArn)")
            if "NotPrincipal" in s or ("NotAction" in s and s.get("Effect") == "Allow"):
                self.problem(here, "queue policy statement with NotPrincipal or NotAction")
        for url in as_list(self.r.resolve(props.get("Queues"))):
            queue = self.queue_arns.get(url)
            if queue is None:
                self.problem(logical_id, f"queue policy on {url}, not one of the template's queues")
                continue
            rules = self.queue_rules.get(queue, [])
            requeuers = self.queue_requeuers.get(queue, [])
            senders = f"its rule {rules}" + (f" and the re-queueing roles {requeuers}" if requeuers else "")
            on_queue = [
                s for s in statements
                if allows(s, "sqs:SendMessage") and any(resource_matches(str(r), queue) for r in as_list(s.get("Resource")))
            ]
            for s in on_queue:
                if s.get("Effect") != "Allow":
                    continue
                here = f"{logical_id} statement {s.get('Sid') or statements.index(s)}"
                if s.get("Principal") != {"Service": EVENTS} and s.get("Principal") != {"Service": [EVENTS]}:
                    self.problem(here, f"allows sqs:SendMessage on {queue} to {json.dumps(s.get('Principal'))}: only {EVENTS}, for {senders}")
                sources = condition_value(s, ARN_EQUALS, "aws:SourceArn")
                if not sources or any(x not in rules for x in sources):
                    self.problem(here, f"allows sqs:SendMessage on {queue} from {sources or 'any source'}: only from {senders}")
            # The Deny: Principal "*", every other sender refused.
            problems = []
            for s in on_queue:
                if s.get("Effect") != "Deny" or "NotPrincipal" in s or "NotResource" in s:
                    continue
                if s.get("Principal") not in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
                    continue
                here = f"{logical_id} statement {s.get('Sid') or statements.index(s)}"
                exempt = {"aws:sourcearn": [], "aws:principalarn": []}
                wrong = []
                for op, block in (s.get("Condition") or {}).items():
                    for key, values in block.items():
                        if op in NEGATED and key.lower() in exempt:
                            exempt[key.lower()] += [str(v) for v in as_list(values)]
                        else:
                            wrong.append(f"{op} {key}")
                sources, principals = exempt["aws:sourcearn"], exempt["aws:principalarn"]
                found = []
                if wrong:
                    found.append(f"its conditions {wrong} narrow it (only ArnNotEquals aws:SourceArn / aws:PrincipalArn)")
                others = [x for x in sources if x not in rules] + [x for x in principals if x not in requeuers]
                if others:
                    found.append(f"it lets {others} send besides {senders}")
                missing = [x for x in rules if x not in sources]
                if missing:
                    found.append(f"it refuses the queue's own rule {missing} (add it to ArnNotEquals aws:SourceArn)")
                missing = [x for x in requeuers if x not in principals]
                if missing:
                    found.append(f"it refuses the re-queues of {missing} (Bus::requeue; add them to ArnNotEquals aws:PrincipalArn)")
                if not found:
                    break
                problems += [f"{here}: {x}" for x in found]
            else:
                self.problems.extend(problems)
                self.problem(
                    logical_id,
                    f"nothing denies sqs:SendMessage on {queue} to senders other than {senders} "
                    "(add a Deny, Principal \"*\", with ArnNotEquals aws:SourceArn"
                    + (" and aws:PrincipalArn)" if requeuers else ")"),
                )

    def check_role(self, logical_id, props):
        if props.get("ManagedPolicyArns"):
            self.problem(logical_id, "managed policies attached; their contents cannot be checked here")
        # A policy switched on by a condition (Fn::If) resolves with the AS_SET values.
        for p in as_list(self.r.resolve(props.get("Policies"))):
            yield f"{logical_id}/{p.get('PolicyName')}", p["PolicyDocument"]


_community_config_loaded = False


def parliament_findings(doc):
    """Parliament's findings on `doc` (community auditors included), less the ones
    `accepted` explains away."""
    import parliament

    global _community_config_loaded
    if not _community_config_loaded:
        # The community auditors' finding types, as parliament's own CLI loads them.
        parliament.override_config(
            os.path.join(os.path.dirname(parliament.__file__), "community_auditors", "config_override.yaml")
        )
        _community_config_loaded = True
    policy = parliament.analyze_policy_string(json.dumps(doc), include_community_auditors=True)
    out = []
    for f in policy.findings:
        f = parliament.enhance_finding(f)
        if accepted(f, doc):
            continue
        out.append(f"parliament {f.severity} {f.issue}: {f.detail} {f.location if f.location else ''}".rstrip())
    return out


def pass_role_confined(doc):
    """Every Allow of iam:PassRole names its role and is conditioned on iam:PassedToService."""
    statements = [s for s in as_list(doc.get("Statement")) if s.get("Effect") == "Allow" and allows(s, "iam:PassRole")]
    return bool(statements) and all(
        condition_value(s, STRING_EQUALS, "iam:PassedToService")
        and not any("*" in str(r) for r in as_list(s.get("Resource")))
        for s in statements
    )


def accepted(finding, doc):
    """The parliament findings that are expected, each for a stated reason:

    - RESOURCE_MISMATCH on an action whose required resource types the policy covers
      across several statements. Parliament wants each statement to name every
      required type of its action; RunInstances is split on purpose (AWS's own examples
      and Karpenter's policy do the same), because each resource type takes a different
      condition (request tag on what is created, IDs on subnets and security groups).
    - PERMISSIONS_MANAGEMENT_ACTIONS and PRIVILEGE_ESCALATION (CreateEC2WithExistingIP)
      for iam:PassRole with ec2:RunInstances: a machine controller must pass the
      instance profile's role to the instances it launches (Karpenter and CAPA do).
      Accepted only while every PassRole names one role and is conditioned on
      iam:PassedToService, which the project's own rules check as well.
    """
    if finding.issue == "RESOURCE_MISMATCH" and isinstance(finding.detail, list):
        for missing in finding.detail:
            action, fmt = missing.get("action"), missing.get("required_format")
            if not action or not fmt or fmt == "*":
                return False
            covered = any(
                fnmatch.fnmatchcase(str(r), fmt)
                for s in as_list(doc.get("Statement"))
                if s.get("Effect") == "Allow" and allows(s, action)
                for r in as_list(s.get("Resource"))
            )
            if not covered:
                return False
        return True
    if finding.issue in ("PERMISSIONS_MANAGEMENT_ACTIONS", "PRIVILEGE_ESCALATION"):
        # The community auditors put the actions in the finding's location.
        where = finding.detail if isinstance(finding.detail, dict) else finding.location
        actions = {a.lower() for a in (where or {}).get("actions", [])} if isinstance(where, dict) else set()
        if actions and actions <= {"iam:passrole", "ec2:runinstances"} and pass_role_confined(doc):
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("template", help="the SAM-transformed template (JSON or YAML)")
    ap.add_argument("--policies", help="a directory of example policies (*.json) to run parliament on")
    ap.add_argument("--dump", help="write the resolved policies to this directory (to read them)")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")  # parliament imports pkg_resources
    from cfnlint.decode import decode

    template, matches = decode(args.template)
    if matches:
        for m in matches:
            print(f"check-iam: {m}", file=sys.stderr)
        return 1
    template = json.loads(json.dumps(template))
    resolver = Resolver(template)
    definition = load_iam_definition()
    try:
        checker = Checker(template, resolver, definition)
    except (Unresolvable, KeyError, ValueError, TypeError) as e:
        print(f"check-iam: cannot resolve the template's tables, buses, queues or functions: {e}")
        return 1
    problems = checker.problems

    count = 0
    guarded = set()
    for logical_id, res in (template.get("Resources") or {}).items():
        kind = res.get("Type")
        props = res.get("Properties") or {}
        try:
            if kind == "AWS::IAM::Role":
                docs = [(w, resolver.resolve(d), logical_id) for w, d in checker.check_role(logical_id, props)]
            elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                roles = [r.get("Ref") for r in as_list(props.get("Roles")) if isinstance(r, dict)]
                docs = [(logical_id, resolver.resolve(props["PolicyDocument"]), roles[0] if roles else None)]
            elif kind == "AWS::SQS::QueuePolicy":
                doc = resolver.resolve(props["PolicyDocument"])
                count += 1
                checker.check_queue_policy(logical_id, props, doc)
                guarded.update(checker.queue_arns.get(u) for u in as_list(resolver.resolve(props.get("Queues"))))
                continue
            else:
                continue
        except (Unresolvable, KeyError, ValueError, TypeError) as e:
            problems.append(f"{logical_id}: cannot resolve its policy: {e}")
            continue
        for where, doc, role_id in docs:
            count += 1
            if args.dump:
                os.makedirs(args.dump, exist_ok=True)
                with open(os.path.join(args.dump, where.replace("/", "_") + ".json"), "w") as f:
                    json.dump(doc, f, indent=2)
            for finding in parliament_findings(doc):
                problems.append(f"{where}: {finding}")
            checker.check_identity_policy(where, doc, role_id)

    for queue, rules in checker.queue_rules.items():
        if queue not in guarded:
            problems.append(f"{queue}: fed by {rules} but has no queue policy (only its rule may send to it)")

    examples = sorted(glob.glob(os.path.join(args.policies, "*.json"))) if args.policies else []
    for path in examples:
        count += 1
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"{path}: {e}")
            continue
        for finding in parliament_findings(doc):
            problems.append(f"{path}: {finding}")
        for i, s in enumerate(as_list(doc.get("Statement"))):
            for a in as_list(s.get("Action")):
                if s.get("Effect") == "Allow" and (a == "*" or a.endswith(":*")):
                    problems.append(f"{path} statement {s.get('Sid') or i}: allows {a!r}")

    if count == 0:
        problems.append(f"{args.template}: no IAM policy found")
    for p in problems:
        print(f"check-iam: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
