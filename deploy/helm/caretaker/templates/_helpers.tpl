{{/* Labels of a component: same keys as the kustomize base, plus Helm's own. */}}
{{- define "caretaker.selector" -}}
app.kubernetes.io/name: {{ .root.Release.Name }}-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "caretaker.labels" -}}
{{ include "caretaker.selector" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: caretaker
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "caretaker.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "caretaker.apiTokensSecret" -}}
{{ .Values.aggregator.apiTokensSecret | default (printf "%s-api-tokens" .Release.Name) }}
{{- end }}

{{- define "caretaker.runtimeSocket" -}}
{{- if eq .Values.agent.containerRuntime "docker" -}}
/var/run/docker.sock
{{- else if eq .Values.agent.containerRuntime "containerd" -}}
/run/containerd/containerd.sock
{{- else if ne .Values.agent.containerRuntime "none" -}}
{{- fail (printf "agent.containerRuntime must be none, docker or containerd, not %q" .Values.agent.containerRuntime) -}}
{{- end -}}
{{- end }}

{{- define "caretaker.validate" -}}
{{- if not (has .Values.aggregator.persistence.accessMode (list "ReadWriteOnce" "ReadWriteMany")) -}}
{{- fail (printf "aggregator.persistence.accessMode must be ReadWriteOnce or ReadWriteMany, not %q" .Values.aggregator.persistence.accessMode) -}}
{{- end -}}
{{- if not (has .Values.agent.tlsSource (list "secret" "hostPath")) -}}
{{- fail (printf "agent.tlsSource must be secret or hostPath, not %q" .Values.agent.tlsSource) -}}
{{- end -}}
{{- end }}
