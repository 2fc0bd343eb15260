{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "cleanup-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, suffixed with the chart name unless it contains it. */}}
{{- define "cleanup-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cleanup-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cleanup-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cleanup-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object, CRDs included (crdgen.py renders the CRD templates with this helper). */}}
{{- define "cleanup-operator.labels" -}}
helm.sh/chart: {{ include "cleanup-operator.chart" . }}
{{ include "cleanup-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cleanup-operator
{{- end }}

{{- define "cleanup-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cleanup-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cleanup-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions, shared by the ClusterRole (cluster-wide mode) and each Role (namespaced mode),
as tests/cluster/test_chart_rbac.py runs it with this chart's token. Every call it makes is a PATCH,
never an update (PUT), and it owns no other objects (so no finalizers subresource):
- our kinds: Kopf lists and watches them and patches them (finalizers, progress annotations); the
  operator reads one again before its clean-up on delete, and patches annotations;
- their /status: the operator's status patches;
- Secrets: get, list and watch, for the label-selector watch of the Secrets labelled
  cleanup.artifacts.dev/credentials: "true" (the operator refuses any other Secret);
- core events: Kopf posts them (create only; it never patches or uses events.k8s.io).
*/}}
{{- define "cleanup-operator.rules" -}}
- apiGroups: ["cleanup.artifacts.dev"]
  resources: ["cleanuppolicies", "storageprunes", "artifactstreamsyncs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["cleanup.artifacts.dev"]
  resources: ["cleanuppolicies/status", "storageprunes/status", "artifactstreamsyncs/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
What this release watches, as the Deployment's cleanup.artifacts.dev/watched-namespaces annotation
says it: "*" for every namespace, "shard:<name>" for the namespaces labelled
cleanup.artifacts.dev/shard=<name> (watch.shard), else the namespaces' names joined by ",".
*/}}
{{- define "cleanup-operator.watched" -}}
{{- if .Values.watch.allNamespaces }}*{{ else if .Values.watch.shard }}shard:{{ .Values.watch.shard }}{{ else }}{{ join "," .Values.watch.namespaces }}{{ end }}
{{- end }}

{{/*
A watched list (a list of strings) with each "shard:<name>" followed by the namespaces labelled
cleanup.artifacts.dev/shard=<name> now (found with `lookup`), joined by ",".
*/}}
{{- define "cleanup-operator.expandWatched" -}}
{{- $out := list }}
{{- $all := list }}
{{- if regexMatch "(^|,)shard:" (join "," .) }}
{{- $all = (lookup "v1" "Namespace" "" "").items | default list }}
{{- end }}
{{- range $w := . }}
{{- $out = append $out $w }}
{{- if hasPrefix "shard:" $w }}
{{- range $n := $all }}
{{- if eq (get ($n.metadata.labels | default dict) "cleanup.artifacts.dev/shard") (trimPrefix "shard:" $w) }}
{{- $out = append $out $n.metadata.name }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/*
Shards: two releases watching one namespace would both reconcile its resources, each under its own
Lease. Refused where the chart can tell: the other releases' Deployments (found with `lookup`, so on
a real install or upgrade, not in `helm template`) carry the annotation above. A shard overlaps the
same shard, and a listed namespace that carries its label now (a namespace labelled later is the
labeller's choice: the label names one shard, so only a listing release can still watch it too).
*/}}
{{- define "cleanup-operator.refuseOverlap" -}}
{{- $mine := include "cleanup-operator.expandWatched" (include "cleanup-operator.watched" . | splitList "," | compact) | splitList "," | compact }}
{{- range $d := (lookup "apps/v1" "Deployment" "" "").items | default list }}
{{- $meta := $d.metadata }}
{{- $theirs := get ($meta.annotations | default dict) "cleanup.artifacts.dev/watched-namespaces" }}
{{- $release := get ($meta.labels | default dict) "app.kubernetes.io/instance" }}
{{- if and $theirs (not (and (eq $meta.namespace $.Release.Namespace) (eq $release $.Release.Name))) }}
{{- $theirList := include "cleanup-operator.expandWatched" (splitList "," $theirs | compact) | splitList "," | compact }}
{{- $shared := list }}
{{- if has "*" $theirList }}
{{- $shared = $mine }}
{{- else if has "*" $mine }}
{{- $shared = $theirList }}
{{- else }}
{{- range $ns := $mine }}
{{- if has $ns $theirList }}
{{- $shared = append $shared $ns }}
{{- end }}
{{- end }}
{{- end }}
{{- if $shared }}
{{- $said := ternary "every namespace" (join ", " ($shared | uniq) | replace "shard:" "shard ") (has "*" $shared) }}
{{- fail (printf "release %s in namespace %s already watches %s: two operators would reconcile the same resources. Give each release namespaces of its own (watch.allNamespaces=false, and watch.namespaces or watch.shard)" $release $meta.namespace $said) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
