{{/* What both Deployments share about their /metrics endpoint. */}}

{{/* The flags: HTTPS with TokenReview/SubjectAccessReview unless metrics.secure is false. */}}
{{- define "bosun.metricsArgs" -}}
- --metrics-secure={{ .Values.metrics.secure }}
{{- if and .Values.metrics.secure .Values.metrics.certSecret }}
- --metrics-cert-dir=/etc/bosun/metrics-certs
{{- end }}
{{- end }}

{{/* The rights that asking the API server who is scraping takes. */}}
{{- define "bosun.metricsAuthRules" -}}
{{- if .Values.metrics.secure }}
# /metrics asks the API server who is scraping (metrics.secure).
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
{{- end }}
{{- end }}

{{/* The serving certificate from metrics.certSecret, if given. */}}
{{- define "bosun.metricsCertMount" -}}
{{- if and .Values.metrics.secure .Values.metrics.certSecret }}
volumeMounts:
- name: metrics-certs
  mountPath: /etc/bosun/metrics-certs
  readOnly: true
{{- end }}
{{- end }}

{{- define "bosun.metricsCertVolume" -}}
{{- if and .Values.metrics.secure .Values.metrics.certSecret }}
volumes:
- name: metrics-certs
  secret:
    secretName: {{ .Values.metrics.certSecret }}
{{- end }}
{{- end }}
