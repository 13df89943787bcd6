{{/*
Static templates shipped with releaser. They translate values.yaml (which
releaser generates from the plan) into manifests and decide nothing new.
*/}}

{{- define "releaser.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "releaser.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* registry/repository@digest; global.imageRegistry replaces the registry (airgap installs). */}}
{{- define "releaser.image" -}}
{{- $img := index .root.Values.images .image -}}
{{- if not $img -}}{{- fail (printf "values: images.%s is not defined" .image) -}}{{- end -}}
{{- $reg := .root.Values.global.imageRegistry | default $img.registry -}}
{{- printf "%s/%s@%s" $reg $img.repository $img.digest -}}
{{- end }}

{{/*
A job's Job name. One services wait for (no hooks) is a release object named by its spec and image
digest: a changed job is a new Job (a Job's pod template cannot change), an unchanged one is left
as it is (it does not run again). A hook job keeps its name: Helm deletes it before each run.
*/}}
{{- define "releaser.jobName" -}}
{{- $svc := index .root.Values.services .name -}}
{{- if $svc.job.hooks -}}
{{- .name -}}
{{- else -}}
{{- $digest := (index .root.Values.images $svc.image).digest -}}
{{- printf "%s-%s" .name (printf "%s@%s" (toJson $svc) $digest | sha256sum | trunc 10) -}}
{{- end -}}
{{- end }}

{{/* The Job names a service's pods wait for, comma-separated: its afterJobs that are enabled. */}}
{{- define "releaser.afterJobs" -}}
{{- $names := list -}}
{{- if .root.Values.probe.image -}}
{{- range .svc.afterJobs -}}
{{- $job := index $.root.Values.services . -}}
{{- if and $job $job.enabled -}}
{{- $names = append $names (include "releaser.jobName" (dict "root" $.root "name" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join "," $names -}}
{{- end }}

{{/*
A command, its arguments or an env value as Kubernetes must read it to pass it on unchanged: the
kubelet expands $(VAR) in them and reads $$ as $, so each $ is written $$ (values stay literal,
as in Compose, where releaser writes $$ for the same reason).
*/}}
{{- define "releaser.literal" -}}
{{- if kindIs "string" . -}}
{{- replace "$" "$$" . | toJson -}}
{{- else -}}
{{- $out := list -}}
{{- range . }}{{ $out = append $out (replace "$" "$$" (toString .)) }}{{ end -}}
{{- toJson $out -}}
{{- end -}}
{{- end }}

{{- define "releaser.probe" -}}
{{- $h := .health -}}
{{- if $h.http }}
httpGet:
  path: {{ $h.http.path | toJson }}
  port: {{ $h.http.port }}
{{- else if $h.tcp }}
tcpSocket:
  port: {{ $h.tcp.port }}
{{- else }}
exec:
  command: {{ toJson $h.exec.command }}
{{- end }}
periodSeconds: {{ $h.intervalSeconds }}
timeoutSeconds: {{ $h.timeoutSeconds }}
failureThreshold: {{ $h.retries }}
{{- end }}

{{- define "releaser.containerSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
seccompProfile:
  type: RuntimeDefault
capabilities:
  drop: ["ALL"]
{{- with .add }}
  add: {{ toJson . }}
{{- end }}
{{- end }}

{{/* The tcpao-proxy TOML. Byte-identical to what releaser writes for Compose. */}}
{{- define "releaser.tcpaoConfig" -}}
{{- $t := .tcpao -}}
{{- if eq $t.role "initiator" -}}
# tcpao-proxy initiator for {{ .name }}: plain {{ $t.listen }} -> TCP-AO {{ include "releaser.tcpaoRemote" $t }}
# Rendered by releaser. The key is read at run time from /run/secrets/tcpao-key; it is never in this file.
[global]
log_format = "json"
idle_timeout_secs = 120
tcp_keepalive = true
keepalive_time_secs = 30
keepalive_intvl_secs = 10
keepalive_probes = 3

[initiator]
listen_plain = "{{ $t.listen }}"
remote_ao = "{{ include "releaser.tcpaoRemote" $t }}"
{{- else -}}
# tcpao-proxy terminator for {{ .name }}: TCP-AO {{ $t.listen }} -> plain {{ $t.forward }}
# Rendered by releaser. The key is read at run time from /run/secrets/tcpao-key; it is never in this file.
# No peer_port: the initiator connects from an ephemeral port (the kernel matches keys on the address alone).
[global]
log_format = "json"
idle_timeout_secs = 120
tcp_keepalive = true
keepalive_time_secs = 30
keepalive_intvl_secs = 10
keepalive_probes = 3

[terminator]
listen_ao = "{{ $t.listen }}"
forward_plain = "{{ $t.forward }}"
{{- end }}

[[ao_policy]]
name = "{{ $t.policyName }}"
peer_ip = "{{ $t.peerIP }}"
{{- if $t.peerPort }}
peer_port = {{ $t.peerPort }}
{{- end }}
keyid = {{ $t.keyId }}
mac_alg = "{{ $t.macAlgorithm }}"
key_source = "file:/run/secrets/tcpao-key"
{{ end }}

{{/* Where a TCP-AO initiator connects: its peer's node address and port. */}}
{{- define "releaser.tcpaoRemote" -}}
{{ .peerIP }}:{{ .peerPort }}
{{- end }}

{{- /* The probe's check of a sidecar's wire leg: an established connection with the peer's node on the
terminator's port (the initiator's peerPort, the terminator's own listen port). */}}
{{- define "releaser.tcpaoLeg" -}}
leg://{{ .peerIP }}:{{ if eq .role "initiator" }}{{ .peerPort }}{{ else }}{{ splitList ":" .listen | last }}{{ end }}
{{- end }}

{{- define "releaser.peers" -}}
{{- range .peers }}
{{- if .service }}
- podSelector:
    matchLabels:
      {{- include "releaser.selector" (dict "root" $.root "name" .service) | nindent 6 }}
{{- else if .cidr }}
- ipBlock:
    cidr: {{ .cidr }}
{{- else if .namespace }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/*
podman.kubePlay: every port the host gives out (every port when all the pods are on the host's
network, else the public ones, which are published) is given once: two services with one port
cannot both run on one host. Fails naming them.
*/}}
{{- define "releaser.podmanPorts" -}}
{{- $seen := dict -}}
{{- range $name, $svc := .root.Values.services -}}
{{- if and $svc.enabled (ne $svc.kind "Job") -}}
{{- range $svc.ports -}}
{{- if or $.allHost (eq .exposure "public") -}}
{{- $key := printf "%v/%s" .port .protocol -}}
{{- with get $seen $key -}}
{{- fail (printf "podman.kubePlay: services %s and %s both need port %s on this host (podman has no Services to tell them apart): change one's port in release.yaml, or run the release with `releaser quickstart`" . $name $key) -}}
{{- end -}}
{{- $_ := set $seen $key $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- /* A container of releaser's probe image whose PID 1 waits (its checks are exec probes). */}}
{{- define "releaser.probeContainer" -}}
image: {{ include "releaser.image" (dict "root" . "image" .Values.probe.image) }}
imagePullPolicy: IfNotPresent
args: ["wait"]
{{- end }}

{{- /* Every probe-image container's resources and restricted security context. */}}
{{- define "releaser.probeLimits" -}}
{{- with .Values.probe.resources -}}
resources:
  {{- toYaml . | nindent 2 }}
{{ end -}}
securityContext:
  {{- include "releaser.containerSecurity" (dict "runAsUser" 65532 "runAsGroup" 65532) | nindent 2 }}
{{- end }}
