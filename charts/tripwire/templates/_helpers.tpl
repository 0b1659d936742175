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

{{/* The environment every tripwire container gets: config, and from Secrets the database URL
and the Kafka login. */}}
{{- define "tripwire.env" -}}
- name: TRIPWIRE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- with .Values.kafka.security.sasl }}
{{- if .existingSecret }}
- name: TRIPWIRE_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: TRIPWIRE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- with .Values.kafka.security.tls }}
{{- if and .existingSecret .keyPasswordKey }}
- name: TRIPWIRE_KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .keyPasswordKey }}
{{- end }}
{{- end }}
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
{{- with .Values.kafka.security.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.database.tls.existingSecret }}
- name: postgres-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "tripwire.mounts" -}}
- name: config
  mountPath: /etc/tripwire
  readOnly: true
- name: state
  mountPath: /home/tripwire/state
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.security.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.database.tls.existingSecret }}
- name: postgres-tls
  mountPath: /etc/postgres-tls
  readOnly: true
{{- end }}
{{- end -}}
