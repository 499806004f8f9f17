#!/usr/bin/env python3
"""Checks the Kubernetes RBAC manifest Capstan asks workload clusters to apply.

    check_rbac.py MANIFEST.yaml

The manifest must hold one ClusterRole granting no more than the calls of the
workload port (shared/runtime/src/ports/workload.rs) — ALLOWED below, keep the two in
step — and a ClusterRoleBinding of that role to the group capstan:workload. Refused:
any verb, resource or API group beyond ALLOWED (so escalate, bind and impersonate
too), any "*", nonResourceURLs, aggregation rules, and bindings to any other subject.

Exit status 0 when the manifest passes; 1 with one line per problem otherwise.
"""

import sys

import yaml

GROUP = "capstan:workload"
# (api group, resource) -> the verbs the port uses.
ALLOWED = {
    ("", "nodes"): {"get", "list", "patch", "delete"},
    ("", "pods"): {"get", "list"},
    ("", "pods/eviction"): {"create"},
    ("storage.k8s.io", "volumeattachments"): {"get", "list"},
}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    problems = []
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        print(f"check-rbac: {path}: {e}")
        return 1
    roles = [d for d in docs if d.get("kind") == "ClusterRole"]
    bindings = [d for d in docs if d.get("kind") == "ClusterRoleBinding"]
    others = [d.get("kind") for d in docs if d.get("kind") not in ("ClusterRole", "ClusterRoleBinding")]
    if others:
        problems.append(f"unexpected kinds {others}: only one ClusterRole and its ClusterRoleBinding")
    if len(roles) != 1:
        problems.append(f"{len(roles)} ClusterRoles: expected exactly one")
    role_names = {(r.get("metadata") or {}).get("name") for r in roles}
    for role in roles:
        name = (role.get("metadata") or {}).get("name")
        if "aggregationRule" in role:
            problems.append(f"ClusterRole {name}: an aggregationRule grants whatever other roles say")
        for i, rule in enumerate(role.get("rules") or []):
            here = f"ClusterRole {name} rule {i}"
            if rule.get("nonResourceURLs"):
                problems.append(f"{here}: nonResourceURLs {rule['nonResourceURLs']}: the port calls none")
            groups = rule.get("apiGroups") or []
            resources = rule.get("resources") or []
            verbs = rule.get("verbs") or []
            for field, values in (("apiGroups", groups), ("resources", resources), ("verbs", verbs)):
                if any("*" in str(v) for v in values):
                    problems.append(f"{here}: {field} {values} has a wildcard")
            for group in groups:
                for resource in resources:
                    allowed = ALLOWED.get((group, resource))
                    if allowed is None:
                        problems.append(f"{here}: resource {resource!r} in API group {group!r} is not one the workload port uses")
                        continue
                    extra = sorted(set(verbs) - allowed)
                    if extra:
                        problems.append(
                            f"{here}: verbs {extra} on {resource!r} go beyond the workload port's {sorted(allowed)}"
                        )
    if len(bindings) != 1:
        problems.append(f"{len(bindings)} ClusterRoleBindings: expected exactly one")
    for binding in bindings:
        name = (binding.get("metadata") or {}).get("name")
        ref = binding.get("roleRef") or {}
        if ref.get("kind") != "ClusterRole" or ref.get("name") not in role_names:
            problems.append(f"ClusterRoleBinding {name}: binds {ref}, not the manifest's ClusterRole")
        subjects = binding.get("subjects") or []
        if subjects != [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": GROUP}]:
            problems.append(f"ClusterRoleBinding {name}: subjects {subjects}: only the group {GROUP}")
    for p in problems:
        print(f"check-rbac: {path}: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
