{{/*
The controller's pod, shared by the Deployment (one shard) and the StatefulSet (several). Every
setting reaches the controller as a PANKA_* variable; secrets are mounted as files, never put
in the environment. The root filesystem is read-only: HOME, the repository cache and /tmp are
emptyDirs.
*/}}
{{- define "panka.podTemplate" -}}
{{- $v := .Values }}
{{- $git := $v.source.git }}
{{- $gitMode := eq $v.source.mode "git" }}
{{- $shards := int $v.sharding.shards }}
metadata:
  labels:
    {{- include "panka.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or (and $gitMode $git.knownHosts) $v.podAnnotations }}
  annotations:
    {{- if and $gitMode $git.knownHosts }}
    # Rolls the pods when known_hosts changes.
    checksum/known-hosts: {{ $git.knownHosts | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "panka.serviceAccountName" . }}
  automountServiceAccountToken: true
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ add (include "panka.durationSeconds" $v.shutdownTimeout | int) 15 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: controller
      image: {{ include "panka.image" . | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities:
          drop: ["ALL"]
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: HOME
          value: /home/nonroot
        - name: PANKA_CACHE_DIR
          value: /var/cache/panka
        - name: PANKA_SOURCE
          value: {{ $v.source.mode | quote }}
        {{- if $gitMode }}
        - name: PANKA_REPO_URL
          value: {{ $git.url | quote }}
        - name: PANKA_BRANCH
          value: {{ $git.branch | quote }}
        {{- if $git.path }}
        - name: PANKA_REPO_PATH
          value: {{ $git.path | quote }}
        {{- end }}
        - name: PANKA_ENVIRONMENTS
          value: {{ join "," $git.environments | quote }}
        - name: PANKA_POLL_INTERVAL
          value: {{ $git.pollInterval | quote }}
        {{- if $git.credentials.tokenSecret.name }}
        - name: PANKA_GIT_TOKEN_FILE
          value: /etc/panka/git-token/token
        - name: PANKA_GIT_USERNAME
          value: {{ $git.credentials.username | quote }}
        {{- end }}
        {{- if $git.credentials.sshKeySecret.name }}
        - name: PANKA_GIT_SSH_KEY_FILE
          value: /etc/panka/git-ssh/ssh-privatekey
        {{- end }}
        {{- if $git.knownHosts }}
        - name: PANKA_GIT_KNOWN_HOSTS
          value: /etc/panka/known-hosts/known_hosts
        {{- end }}
        - name: PANKA_NAMESPACE
          value: {{ .Release.Namespace | quote }}
        {{- else }}
        {{- if $v.source.crd.allNamespaces }}
        - name: PANKA_ALL_NAMESPACES
          value: "true"
        {{- else }}
        - name: PANKA_NAMESPACE
          value: {{ include "panka.stackNamespace" . | quote }}
        {{- end }}
        {{- with $v.source.crd.environments }}
        - name: PANKA_ENVIRONMENTS
          value: {{ join "," . | quote }}
        {{- end }}
        {{- end }}
        - name: PANKA_DRIFT_INTERVAL
          value: {{ $v.driftInterval | quote }}
        - name: PANKA_CONCURRENCY
          value: {{ $v.concurrency | quote }}
        - name: PANKA_AWS_CALLS_PER_SECOND
          value: {{ $v.awsCallsPerSecond | quote }}
        - name: PANKA_ROLLOUT_WAIT
          value: {{ $v.rolloutWait | quote }}
        - name: PANKA_ROLLOUT_TIMEOUT
          value: {{ $v.rolloutTimeout | quote }}
        - name: PANKA_ALLOW_DESTROY
          value: {{ $v.allowDestroy | quote }}
        - name: PANKA_SHUTDOWN_TIMEOUT
          value: {{ $v.shutdownTimeout | quote }}
        - name: PANKA_METRICS_ADDR
          value: {{ printf "0.0.0.0:%d" (int $v.metrics.port) | quote }}
        {{- if $v.webhook.enabled }}
        - name: PANKA_WEBHOOK_ADDR
          value: {{ printf "0.0.0.0:%d" (int $v.webhook.port) | quote }}
        - name: PANKA_WEBHOOK_SECRET_FILE
          value: /etc/panka/webhook/secret
        {{- end }}
        - name: PANKA_LOG
          value: {{ $v.logging.level | quote }}
        - name: PANKA_LOG_FORMAT
          value: {{ $v.logging.format | quote }}
        {{- if gt $shards 1 }}
        - name: PANKA_SHARD
          value: {{ printf "ordinal/%d" $shards | quote }}
        {{- end }}
        - name: PANKA_NO_LEADER_ELECTION
          value: {{ not $v.leaderElection.enabled | quote }}
        {{- if $v.leaderElection.enabled }}
        - name: PANKA_LEASE_NAME
          value: {{ $v.leaderElection.leaseName | default (include "panka.fullname" .) | quote }}
        {{- end }}
        {{- with $v.state.bucket }}
        - name: PANKA_STATE_BUCKET
          value: {{ . | quote }}
        {{- end }}
        {{- with $v.state.lockTable }}
        - name: PANKA_LOCK_TABLE
          value: {{ . | quote }}
        {{- end }}
        {{- with $v.state.region }}
        - name: AWS_REGION
          value: {{ . | quote }}
        {{- end }}
        {{- with $v.state.endpointUrl }}
        - name: AWS_ENDPOINT_URL
          value: {{ . | quote }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $v.metrics.port }}
          protocol: TCP
        {{- if $v.webhook.enabled }}
        - name: webhook
          containerPort: {{ $v.webhook.port }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        initialDelaySeconds: 5
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: home
          mountPath: /home/nonroot
        - name: cache
          mountPath: /var/cache/panka
        - name: tmp
          mountPath: /tmp
        {{- if and $gitMode $git.credentials.tokenSecret.name }}
        - name: git-token
          mountPath: /etc/panka/git-token
          readOnly: true
        {{- end }}
        {{- if and $gitMode $git.credentials.sshKeySecret.name }}
        - name: git-ssh
          mountPath: /etc/panka/git-ssh
          readOnly: true
        {{- end }}
        {{- if and $gitMode $git.knownHosts }}
        - name: known-hosts
          mountPath: /etc/panka/known-hosts
          readOnly: true
        {{- end }}
        {{- if $v.webhook.enabled }}
        - name: webhook-secret
          mountPath: /etc/panka/webhook
          readOnly: true
        {{- end }}
  volumes:
    - name: home
      emptyDir: {}
    - name: cache
      emptyDir: {}
    - name: tmp
      emptyDir: {}
    {{- if and $gitMode $git.credentials.tokenSecret.name }}
    - name: git-token
      secret:
        secretName: {{ $git.credentials.tokenSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $git.credentials.tokenSecret.key }}
            path: token
    {{- end }}
    {{- if and $gitMode $git.credentials.sshKeySecret.name }}
    - name: git-ssh
      secret:
        secretName: {{ $git.credentials.sshKeySecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $git.credentials.sshKeySecret.key }}
            path: ssh-privatekey
    {{- end }}
    {{- if and $gitMode $git.knownHosts }}
    - name: known-hosts
      configMap:
        name: {{ include "panka.fullname" . }}-known-hosts
    {{- end }}
    {{- if $v.webhook.enabled }}
    - name: webhook-secret
      secret:
        secretName: {{ $v.webhook.secret.name }}
        defaultMode: 0440
        items:
          - key: {{ $v.webhook.secret.key }}
            path: secret
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
