{{- define "tripwire.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tripwire.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tripwire.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tripwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tripwire.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tripwire.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The environment every tripwire container gets: config, and the database URL from a Secret. */}}
{{- define "tripwire.env" -}}
- name: TRIPWIRE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
- name: TRIPWIRE_CLOUD_EVENTS_FILE
  value: /etc/tripwire/cloud_events.yaml
{{- end -}}

{{- define "tripwire.volumes" -}}
- name: config
  configMap:
    name: {{ include "tripwire.fullname" . }}
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "tripwire.mounts" -}}
- name: config
  mountPath: /etc/tripwire
  readOnly: true
- name: state
  mountPath: /home/tripwire/state
- name: tmp
  mountPath: /tmp
{{- end -}}
