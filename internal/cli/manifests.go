package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/manifests"
)

func newManifestsCommand(s Streams) *cobra.Command {
	var (
		cfgFile, caFile, clientCAFile string
		webhookOnly, clientAuth       bool
		allowList, guard              bool
		o                             manifests.Options
	)
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Print the Kubernetes objects that install stagegate, as YAML",
		Long: "Prints a Namespace, ServiceAccount, ConfigMaps (the server's config.yaml from --config,\n" +
			"its policyDir and the public keys and CA files it names), PersistentVolumeClaim, Service,\n" +
			"NetworkPolicy, Deployment, and the admission objects: the ValidatingWebhookConfiguration with\n" +
			"one namespace entry and one pod-label entry per stage (and two that refuse a stage\n" +
			"label naming no stage), the ValidatingAdmissionPolicy that lets only\n" +
			"--stage-label-group change the stage label on namespaces, and, with --pin-tags, the\n" +
			"MutatingWebhookConfiguration that rewrites pod image tags to checked digests.\n" +
			"The Secrets <service>-tls, <service>-keys and <service>-tokens are referenced,\n" +
			"never generated.\n\n" +
			"The webhook has a port of its own (9443; the Service's 443), apart from the promotion\n" +
			"API's (8443), and requires the client certificate of the API server, configured on the\n" +
			"control plane as in deploy/apiserver/README.md. Its CA goes into the ConfigMap\n" +
			"<service>-apiserver-ca from --webhook-client-ca, or the config's admission.clientCAFile;\n" +
			"with neither, create that ConfigMap yourself. --webhook-client-auth=false is for control\n" +
			"planes whose flags you cannot set: then anything that reaches the webhook's port can\n" +
			"forge reviews, and the NetworkPolicy is the only fence, so --apiserver-cidr (or\n" +
			"--apiserver-pods) is required. Without them the NetworkPolicy leaves the webhook's port\n" +
			"open and the certificate alone keeps others out: no default address fits every cluster,\n" +
			"and one that misses the API server would refuse every workload.\n\n" +
			"The webhook sees every namespaced resource, since any kind may carry a pod template;\n" +
			"--skip-resource excludes a custom kind that runs no pods and that the server cannot read.\n\n" +
			"The server contacts only the registries of its allow-list: the config's registries and\n" +
			"--registry. With neither, the command refuses rather than guess; --registry-allow-list=false\n" +
			"lets the server contact any host a pod or a registry's redirect names.\n" +
			"The rollback guard keeps the newest checkpoint the server published on a claim of its own,\n" +
			"<service>-guard, and the server refuses to start on an older ledger (README: the rollback\n" +
			"guard, and how to recover from it). --checkpoint-guard=false leaves it out.\n\n" +
			"--replicas 3 (or 5, 7) prints a StatefulSet instead of the Deployment: members that replicate\n" +
			"the ledger over a peer port (8444, mutual TLS), a headless Service <service>-peers, a\n" +
			"PodDisruptionBudget, a NetworkPolicy for the peer port, and the config's cluster: section.\n" +
			"Each member reads its peer certificate from the Secret <service>-<i>-peer, which\n" +
			"`stagegate certs generate --peers` prepares (README: Deploying three replicas).\n\n" +
			"With --url the webhook calls a server outside the cluster (e.g. `stagegate serve`\n" +
			"on https://127.0.0.1:8443); combine it with --webhook-only.\n" +
			"--ca-file \"\" leaves caBundle unset, for a CA injector or an overlay to fill in.",
		Example: "  stagegate manifests --ca-file certs/ca.crt --webhook-client-ca client-ca/ca.crt \\\n" +
			"    --apiserver-cidr 192.0.2.0/28 --registry ghcr.io --registry registry.corp.example | kubectl apply -f -\n" +
			"  stagegate manifests --webhook-client-auth=false --apiserver-cidr 172.16.0.0/28 --registry ghcr.io\n" +
			"  stagegate manifests --webhook-only --url https://127.0.0.1:8443\n" +
			"  stagegate manifests --webhook-only --pin-tags prod --skip-resource widgets.example.com \\\n" +
			"    --stage-label-group system:masters --stage-label-group platform-admins",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return err
			}
			if err := validateForManifests(cfg); err != nil {
				return err
			}
			o.Stages = cfg.StageNames()
			if caFile != "" {
				if o.CABundle, err = os.ReadFile(caFile); err != nil {
					err = fmt.Errorf("manifests: CA bundle: %w", err)
					if errors.Is(err, fs.ErrNotExist) {
						return &missingFileError{err: err, creator: makesCerts + `; or pass --ca-file "" to leave caBundle unset`}
					}
					return err
				}
			}
			o.NoWebhookClientAuth = !clientAuth
			o.NoRegistryAllowList = !allowList
			o.NoCheckpointGuard = !guard
			if clientCAFile != "" && !webhookOnly {
				if o.WebhookClientCA, err = os.ReadFile(clientCAFile); err != nil {
					return fmt.Errorf("manifests: webhook client CA: %w", err)
				}
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if webhookOnly {
				return manifests.Write(s.Out, manifests.Admission(o)...)
			}
			if o.Server, err = manifests.ServerFiles(cfg, o); err != nil {
				return err
			}
			warnNetwork(s, o)
			notePeers(s, o)
			return manifests.Write(s.Out, manifests.All(o)...)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgFile, "config", "c", "", "config file (YAML) whose stages get webhook entries (default: the built-in stages)")
	f.StringVar(&caFile, "ca-file", "certs/ca.crt", "PEM CA bundle the API server trusts for the webhook; empty leaves caBundle unset")
	f.StringVar(&o.URL, "url", "", "call the webhook at this https base URL instead of the Service (local mode)")
	f.StringVar(&o.Namespace, "namespace", manifests.DefaultNamespace, "namespace of stagegate, excluded from admission")
	f.StringVar(&o.Service, "service", manifests.DefaultService, "name of the webhook Service (and prefix of the other objects)")
	f.StringVar(&o.Image, "image", manifests.DefaultImage, "stagegate container image")
	f.StringVar(&o.ClusterStage, "cluster-stage", "", "bind the whole cluster to this stage")
	f.StringSliceVar(&o.ExcludeNamespaces, "exclude-namespace", nil, "more namespaces never sent to the webhook")
	f.StringSliceVar(&o.SkipResources, "skip-resource", nil, "resource never sent to the validating webhook, as resource.group (e.g. widgets.example.com; a core resource by its name); repeatable")
	// An array, not a slice: a group name may hold a comma.
	f.StringArrayVar(&o.StageLabelGroups, "stage-label-group", slices.Clone(manifests.DefaultStageLabelGroups), "group allowed to add, change or remove the stage label on namespaces; repeatable")
	f.StringSliceVar(&o.PinTags, "pin-tags", nil, "stages (or '*' for all) whose pods get image tags rewritten to the checked digests by a mutating webhook")
	f.BoolVar(&webhookOnly, "webhook-only", false, "print only the admission objects (webhook configurations and the stage-label policy)")
	f.Int32Var(&o.TimeoutSeconds, "timeout", manifests.DefaultTimeoutSeconds, "webhook timeout in seconds (1-30)")
	f.StringVar(&clientCAFile, "webhook-client-ca", "", "PEM CA of the API server's client certificate, for the ConfigMap <service>-apiserver-ca; empty leaves that ConfigMap to you (or to the config's admission.clientCAFile)")
	f.BoolVar(&clientAuth, "webhook-client-auth", true, "require the API server's client certificate on the webhook's port; false lets anything that reaches the port forge reviews, and needs --apiserver-cidr or --apiserver-pods")
	f.StringSliceVar(&o.APIServerCIDRs, "apiserver-cidr", nil, "address range the API server's webhook calls come from (control-plane nodes, or a managed control plane's range); the only sources the NetworkPolicy lets reach the webhook's port; repeatable")
	// An array, not a slice: a label selector may hold a comma.
	f.StringArrayVar(&o.APIServerPods, "apiserver-pods", nil, "pods that carry the API server's webhook calls, as namespace[/label-selector] (e.g. kube-system/k8s-app=konnectivity-agent); repeatable")
	f.StringVar(&o.APIClientNamespaces, "api-client-namespaces", "", "label selector of the namespaces whose pods may reach the promotion API's port (default: every namespace)")
	f.StringSliceVar(&o.APIClientCIDRs, "api-client-cidr", nil, "address range outside the cluster that may reach the promotion API's port; repeatable")
	f.StringSliceVar(&o.Registries, "registry", nil, "registry host[:port] the server may contact, added to the config's registries; repeatable")
	f.BoolVar(&allowList, "registry-allow-list", true, "let the server contact only the config's registries and --registry (one is required); false lets it contact any host")
	f.Int32Var(&o.Replicas, "replicas", 1, "number of servers: 1 runs a Deployment; 3, 5 or 7 a StatefulSet whose members replicate the ledger (Raft), with their peer Secrets from `stagegate certs generate --peers`")
	f.Int32Var(&o.NonVoters, "non-voters", 0, "with --replicas 3 or more: members more that replicate the ledger and serve admission without voting (admission capacity)")
	f.BoolVar(&o.AdoptLedger, "adopt-ledger", false, "with --replicas 3 or more: the upgrade from one replica; member 0 adopts the single replica's ledger found on its claim data-<service>-0 (config cluster.adopt), the others start empty and join")
	f.BoolVar(&guard, "checkpoint-guard", true, "keep the newest published checkpoint on the claim <service>-guard, and refuse to start on an older ledger; false leaves the guard out")
	return cmd
}

// warnNetwork says on stderr what the generated objects leave open, since
// the output itself is usually piped to kubectl unread.
func warnNetwork(s Streams, o manifests.Options) {
	switch {
	case o.NoWebhookClientAuth:
		fmt.Fprintf(s.Err, "warning: the webhook does not ask for the API server's client certificate: anything that reaches port %d "+
			"can forge reviews, and the NetworkPolicy is the only fence; it holds only where the network plugin enforces NetworkPolicy\n",
			manifests.WebhookPort)
	case o.WebhookOpen():
		fmt.Fprintf(s.Err, "note: the NetworkPolicy lets any source reach the webhook's port %d; only the API server's client certificate "+
			"keeps others out. Name the API server's addresses with --apiserver-cidr to fence it too\n", manifests.WebhookPort)
	}
	if slices.Contains(o.Registries, manifests.PlaceholderRegistry) {
		fmt.Fprintf(s.Err, "note: %s is a placeholder: the server contacts no registry until you name yours with --registry\n", manifests.PlaceholderRegistry)
	}
	if o.NoRegistryAllowList {
		fmt.Fprintf(s.Err, "warning: the registry allow-list is off: the server contacts any registry host a pod or a redirect names\n")
	}
	if o.NoCheckpointGuard {
		fmt.Fprintf(s.Err, "warning: the rollback guard is off: the server starts on any older copy of its ledger\n")
	}
	if o.Server.ClientAuth && o.Server.ClientCA == "" {
		fmt.Fprintf(s.Err, "note: the pod starts once the ConfigMap %s-apiserver-ca exists, holding the CA of the API server's client certificate:\n"+
			"  kubectl -n %s create configmap %s-apiserver-ca --from-file=%s=client-ca/ca.crt\n",
			o.Service, o.Namespace, o.Service, manifests.ClientCAKey)
	}
}
