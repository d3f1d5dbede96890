{{/* The operator's RBAC rules, in the order and spelling of finserve.operator.rbac: cluster-scoped
rules (CLUSTER_RULES, always a ClusterRole) and the rules it needs in every namespace it serves
(NAMESPACED_RULES). manifests/rbac/ holds the same rules as plain YAML; tests keep all equal. */}}
{{- define "finserve.operatorClusterRules" -}}
# kopf: discover resources and notice CRDs appearing; list namespaces for --namespace globs.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{- define "finserve.operatorNamespacedRules" -}}
- apiGroups: [finserve.dev]
  resources: [modelrollouts]
  verbs: [get, list, watch, patch, update]
- apiGroups: [finserve.dev]
  resources: [modelrollouts/status]
  verbs: [get, patch, update]
# Events on the ModelRollout (kopf posts them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The routing table.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Pool autoscaling: read and scale the generator workloads, and see other autoscalers.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch, update]
- apiGroups: [ray.io]
  resources: [rayservices]
  verbs: [get, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list]
# Evaluation gates: run `finserve eval answers` Jobs, stop them, and read their pods' termination
# messages (the report).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end }}
