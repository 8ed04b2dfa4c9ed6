package cli

import (
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/manifests"
)

func newManifestsCommand(s Streams) *cobra.Command {
	var (
		cfgFile, caFile string
		webhookOnly     bool
		o               manifests.Options
	)
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Print the Kubernetes objects that install stagegate, as YAML",
		Long: "Prints a Namespace, ServiceAccount, ConfigMaps (the server's config.yaml from --config,\n" +
			"its policyDir and the public keys and CA files it names), PersistentVolumeClaim, Service,\n" +
			"Deployment, and the admission objects: the ValidatingWebhookConfiguration with\n" +
			"one namespace entry and one pod-label entry per stage (and two that refuse a stage\n" +
			"label naming no stage), the ValidatingAdmissionPolicy that lets only\n" +
			"--stage-label-group change the stage label on namespaces, and, with --pin-tags, the\n" +
			"MutatingWebhookConfiguration that rewrites pod image tags to checked digests.\n" +
			"The Secrets <service>-tls, <service>-keys and <service>-tokens are referenced,\n" +
			"never generated.\n\n" +
			"The webhook sees every namespaced resource, since any kind may carry a pod template;\n" +
			"--skip-resource excludes a custom kind that runs no pods and that the server cannot read.\n\n" +
			"With --url the webhook calls a server outside the cluster (e.g. `stagegate serve`\n" +
			"on https://127.0.0.1:8443); combine it with --webhook-only.\n" +
			"--ca-file \"\" leaves caBundle unset, for a CA injector or an overlay to fill in.",
		Example: "  stagegate manifests --ca-file certs/ca.crt | kubectl apply -f -\n" +
			"  stagegate manifests --webhook-only --url https://127.0.0.1:8443\n" +
			"  stagegate manifests --pin-tags prod --skip-resource widgets.example.com \\\n" +
			"    --stage-label-group system:masters --stage-label-group platform-admins",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			o.Stages = cfg.StageNames()
			if caFile != "" {
				if o.CABundle, err = os.ReadFile(caFile); err != nil {
					return fmt.Errorf("manifests: CA bundle: %w", err)
				}
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if webhookOnly {
				return manifests.Write(s.Out, manifests.Admission(o)...)
			}
			if o.Server, err = manifests.ServerFiles(cfg); err != nil {
				return err
			}
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
	return cmd
}
