{{/* Names, labels and guards shared by the templates. */}}

{{- define "sandbox.fullname" -}}
{{- printf "%s-sandbox-controller" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's Deployment and service account. */}}
{{- define "sandbox.operatorName" -}}
{{- printf "%s-operator" (include "sandbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandbox.labels" -}}
app.kubernetes.io/name: sandbox-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The controller pods: what the runner pods' NetworkPolicy admits. */}}
{{- define "sandbox.controllerSelector" -}}
app.kubernetes.io/name: sandbox-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The operator's pod: what the browser pods' NetworkPolicy admits besides the controller. */}}
{{- define "sandbox.operatorSelector" -}}
app.kubernetes.io/name: sandbox-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The browser-session rules the controller and the operator both apply (one source). */}}
{{- define "sandbox.browserEnv" -}}
{{- $b := .Values.browser -}}
- {name: BROWSER_NAMESPACE, value: {{ $b.namespace | quote }}}
- {name: BROWSER_WARM_AGENTS, value: {{ $b.warmPods | quote }}}
- {name: BROWSER_IDLE_TIMEOUT_S, value: {{ $b.idleTimeoutSeconds | quote }}}
- {name: BROWSER_MAX_IDLE_TIMEOUT_S, value: {{ $b.maxIdleTimeoutSeconds | quote }}}
- {name: BROWSER_SESSION_LIFETIME_S, value: {{ $b.lifetimeSeconds | quote }}}
- {name: BROWSER_MAX_SESSION_LIFETIME_S, value: {{ $b.maxLifetimeSeconds | quote }}}
- {name: BROWSER_ALLOW_PRIVATE_NETWORKS, value: {{ $b.allowPrivateNetworks | quote }}}
- {name: BROWSER_CHROMIUM_SANDBOX, value: {{ $b.chromiumSandbox | quote }}}
{{- end -}}

{{/* The egress proxy (docs/network.md): its name, its pods, and what it and the
controller both read (one source). */}}
{{- define "sandbox.egressProxy" -}}
{{- printf "%s-egress" (include "sandbox.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandbox.egressProxySelector" -}}
app.kubernetes.io/name: sandbox-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: egress-proxy
{{- end -}}

{{/* Whether executions may reach any name: then the proxy runs. */}}
{{- define "sandbox.networkOn" -}}
{{- if or .Values.network.allowedDomains .Values.network.askUrl }}true{{ end -}}
{{- end -}}

{{/* The grant key: the Secret's, once it exists, else a new one. Where the cluster
cannot be read (helm template), each render makes a new key, and the checksum of it on
both Deployments restarts both: they never sign and check with different keys. */}}
{{- define "sandbox.egressKey" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "sandbox.egressProxy" .) -}}
{{- if $existing -}}
{{- index $existing.data "grant-key" | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{/* The ask-callback's port (network.askUrl's, else its scheme's). */}}
{{- define "sandbox.askPort" -}}
{{- $url := urlParse .Values.network.askUrl -}}
{{- $host := get $url "host" -}}
{{- if contains ":" $host -}}
{{- last (splitList ":" $host) -}}
{{- else if eq (get $url "scheme") "https" -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/* The network settings that hold browsers too, whether or not names are allowed:
the controller's (its sessions' policies) and the egress proxy's. */}}
{{- define "sandbox.networkEnv" -}}
{{- $n := .Values.network -}}
{{- $pairs := list -}}
{{- range $host, $address := $n.internalHosts -}}
{{- $pairs = append $pairs (printf "%s=%s" $host $address) -}}
{{- end -}}
- {name: NETWORK_DENIED_DOMAINS, value: {{ join "," $n.deniedDomains | quote }}}
- {name: NETWORK_ALLOWED_PORTS, value: {{ join "," $n.allowedPorts | quote }}}
- {name: NETWORK_INTERNAL_HOSTS, value: {{ join "," $pairs | quote }}}
{{- end -}}

{{/* What the controller and the egress proxy share when names are allowed. */}}
{{- define "sandbox.egressEnv" -}}
{{- $n := .Values.network -}}
{{- with $n.askUrl }}
- {name: NETWORK_ASK_URL, value: {{ . | quote }}}
- {name: NETWORK_ASK_TIMEOUT_MS, value: {{ $n.askTimeoutMs | quote }}}
{{- end }}
- name: EGRESS_GRANT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "sandbox.egressProxy" . }}
      key: grant-key
{{- end -}}

{{/* Egress to cluster DNS and to the public network: every IPv4 address but
publicNetwork.deniedCIDRs, on "ports" if given (browser pods, the egress proxy). */}}
{{- define "sandbox.publicEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  # Numbered, and named as CoreDNS's pods name theirs: the rule sees the pod's own
  # port after the Service's translation, which need not be 53.
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
    - {protocol: UDP, port: dns}
    - {protocol: TCP, port: dns-tcp}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          {{- range .Values.publicNetwork.deniedCIDRs }}
          - {{ . }}
          {{- end }}
  {{- with .ports }}
  ports:
    {{- range . }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Egress to the addresses of network.internalHosts on network.allowedPorts: the only
private destinations (the egress proxy, browser pods). */}}
{{- define "sandbox.internalHostsEgress" -}}
{{- $n := .Values.network }}
{{- if $n.internalHosts }}
- to:
    {{- range $host, $address := $n.internalHosts }}
    - ipBlock:
        cidr: {{ $address }}/{{ if contains ":" $address }}128{{ else }}32{{ end }}
    {{- end }}
  ports:
    {{- range $n.allowedPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}

{{/* An image reference: registry/repository (the image's registry, else the
controller's image.registry), then @digest if given, else :tag (or the chart's
appVersion). Called with (dict "image" <values> "root" $). */}}
{{- define "sandbox.image" -}}
{{- $registry := default .root.Values.image.registry .image.registry | trimSuffix "/" -}}
{{- $repository := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The pull secrets of every pod the chart and its processes create. */}}
{{- define "sandbox.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Where the chart's own pods run (the controller's, the operator's, the egress proxy's):
the top-level nodeSelector, tolerations, affinity and priorityClassName. */}}
{{- define "sandbox.servicePlacement" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Where the pods of one kind (runner, browser) run, as the JSON setting the controller
or the operator reads (controller.pod_scheduling): only the fields given. Called with
(dict "pods" <runner or browser values> "root" $). */}}
{{- define "sandbox.podScheduling" -}}
{{- $fields := dict -}}
{{- range $name := list "nodeSelector" "tolerations" "affinity" "priorityClassName" "runtimeClassName" -}}
{{- with get $.pods $name }}{{ $_ := set $fields $name . }}{{ end -}}
{{- end -}}
{{- with .root.Values.imagePullSecrets }}{{ $_ := set $fields "imagePullSecrets" . }}{{ end -}}
{{- toJson $fields -}}
{{- end -}}

{{- define "sandbox.tokenSecret" -}}
{{- default (printf "%s-auth" (include "sandbox.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* A value as a CEL literal whose every member is dyn(): CEL wants a literal's
members of one type, and Kubernetes' values mix them (the policy compares a pod's
affinity with runner.affinity so). */}}
{{- define "sandbox.celLiteral" -}}
{{- if kindIs "map" . -}}
{{ "{" }}{{ range $i, $key := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ $key | quote }}: dyn({{ include "sandbox.celLiteral" (get $ $key) }}){{ end }}{{ "}" }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}dyn({{ include "sandbox.celLiteral" $item }}){{ end }}]
{{- else if kindIs "string" . -}}
{{ . | quote }}
{{- else if kindIs "float64" . -}}
{{ . | int64 }}
{{- else -}}
{{ . }}
{{- end -}}
{{- end -}}

{{/* Whether the Ingress is rendered: as ingress.enabled says, and when it says nothing
(null), exactly when a host is given. */}}
{{- define "sandbox.ingressOn" -}}
{{- $ingress := .Values.ingress -}}
{{- if kindIs "invalid" $ingress.enabled -}}
{{- if $ingress.host }}true{{ end -}}
{{- else if $ingress.enabled }}true{{ end -}}
{{- end -}}

{{/* Guards the schema cannot express. */}}
{{- define "sandbox.guards" -}}
{{- range $key, $image := dict "image" .Values.image "runner.image" .Values.runner.image "browser.image" .Values.browser.image -}}
{{- $registry := default $.Values.image.registry $image.registry -}}
{{- if and (not $registry) (not (contains "/" $image.repository)) (ne $image.pullPolicy "Never") -}}
{{- fail (printf "%s: no registry for %s, and none of this chart's images is published: build them (make images), push them, and set image.registry (or %s.repository with its registry; pullPolicy Never for images loaded into the nodes by hand)" $key $image.repository $key) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.auth.token .Values.auth.existingSecret -}}
{{- fail "auth.token and auth.existingSecret exclude each other: give one" -}}
{{- end -}}
{{- if or (eq .Values.browser.namespace .Release.Namespace) (eq .Values.browser.namespace .Values.sandbox.namespace) -}}
{{- fail (printf "browser.namespace (%s) must differ from the release's and the runners' namespaces" .Values.browser.namespace) -}}
{{- end -}}
{{- if gt (int .Values.browser.idleTimeoutSeconds) (int .Values.browser.maxIdleTimeoutSeconds) -}}
{{- fail "browser.idleTimeoutSeconds must not exceed browser.maxIdleTimeoutSeconds" -}}
{{- end -}}
{{- if gt (int .Values.browser.lifetimeSeconds) (int .Values.browser.maxLifetimeSeconds) -}}
{{- fail "browser.lifetimeSeconds must not exceed browser.maxLifetimeSeconds" -}}
{{- end -}}
{{- if not .Values.runner.userNamespace -}}
{{- /* Read where the chart meets a cluster (install, upgrade; not helm template). */ -}}
{{- $class := lookup "node.k8s.io/v1" "RuntimeClass" "" .Values.runner.runtimeClassName -}}
{{- if and $class (not (regexMatch "runsc|gvisor" (toString $class.handler))) -}}
{{- fail (printf "runner.userNamespace false is for gVisor, but RuntimeClass %s runs pods with %s: runner pods would share the node's kernel without a user namespace of their own" .Values.runner.runtimeClassName (toString $class.handler)) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.sandbox.namespace .Release.Namespace -}}
{{- fail (printf "sandbox.namespace (%s) must not be the release's namespace: runner pods get a namespace of their own" .Values.sandbox.namespace) -}}
{{- end -}}
{{- $reserved := list "AUTH_TOKEN" "BACKEND" "HOST" "PORT" "STATE_DIR" "KUBERNETES_NAMESPACE" "RUNNER_IMAGE" "RUNNER_IMAGE_PULL_POLICY" "RUNNER_SECCOMP_PROFILE" "REPLICA_NAME" "WARM_SANDBOXES" "WARM_SANDBOX_MAX_AGE_S" "RUNNER_POD_START_TIMEOUT_S" "RUNNER_POD_SCHEDULING" "RUNNER_USER_NAMESPACE" "RUNNER_CPU_REQUEST" "RUNNER_CPU_LIMIT" "RUNNER_MEMORY_REQUEST_MB" "RUNNER_MEMORY_LIMIT_MB" "RUNNER_EPHEMERAL_STORAGE_MB" "BROWSER_NAMESPACE" "BROWSER_WARM_AGENTS" "BROWSER_IDLE_TIMEOUT_S" "BROWSER_MAX_IDLE_TIMEOUT_S" "BROWSER_SESSION_LIFETIME_S" "BROWSER_MAX_SESSION_LIFETIME_S" "BROWSER_ALLOW_PRIVATE_NETWORKS" "BROWSER_CHROMIUM_SANDBOX" "MAX_BROWSER_SESSIONS" "BROWSER_SESSION_START_TIMEOUT_S" "NETWORK_ALLOWED_DOMAINS" "NETWORK_DENIED_DOMAINS" "NETWORK_ALLOWED_PORTS" "NETWORK_INTERNAL_HOSTS" "NETWORK_MAX_CONNECTIONS" "NETWORK_MAX_MB" "EGRESS_PROXY" "EGRESS_GRANT_KEY" "NETWORK_ASK_URL" "NETWORK_ASK_TIMEOUT_MS" "SHUTDOWN_GRACE_S" "AUTH_KEYS_FILE" "METRICS_PUBLIC" -}}
{{- range $name, $_ := .Values.settings -}}
{{- if has $name $reserved -}}
{{- fail (printf "settings.%s is set by the chart itself; use its own value instead" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
