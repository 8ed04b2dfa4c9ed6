package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
	"github.com/stagegate/stagegate/internal/signing"
)

func newKeysCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage signing keys"}
	var dir, origin string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Write a cosign key pair (cosign.key, cosign.pub) and the ledger log key pair (log.key, log.pub)",
		Long: "The cosign private key is encrypted with the password in $" + config.PasswordEnv + "\n" +
			"(empty if unset). Private keys are written 0600. Existing files are never overwritten.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := signing.GenerateKeys(dir, s.env().KeyPassword, origin); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote %[1]s/cosign.key, %[1]s/cosign.pub, %[1]s/log.key, %[1]s/log.pub\n", dir)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "data/keys", "directory to write the keys to")
	gen.Flags().StringVar(&origin, "origin", config.Default().LogOrigin, "log name used as the checkpoint origin")
	cmd.AddCommand(gen)
	return cmd
}

func newCertsCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Manage the webhook TLS material"}
	var dir, service, namespace string
	var extra, peers []string
	var force bool
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Write a CA (ca.crt, ca.key) and a serving certificate (tls.crt, tls.key) signed by it",
		Long:  peersLong,
		Example: "  stagegate certs generate\n" +
			"  stagegate certs generate --peers stagegate-0,stagegate-1,stagegate-2",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("peers") {
				return generatePeers(s, cmd, peers, dir, service, namespace, extra, force)
			}
			hosts := append(pki.ServiceHosts(service, namespace), extra...)
			if err := pki.Generate(dir, pki.Options{Hosts: hosts, Force: force}); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote %s/{ca.crt,ca.key,tls.crt,tls.key} for %v\n", dir, hosts)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "certs", "output directory (with --peers: default "+defaultPeerDir+")")
	gen.Flags().StringVar(&service, "service", "stagegate", "webhook Service name (with --peers: the peers' headless Service, default "+defaultPeerService+")")
	gen.Flags().StringSliceVar(&peers, "peers", nil, "member IDs (the StatefulSet's pod names): write a peer CA and one mutual-TLS certificate per member instead")
	gen.Flags().StringVar(&namespace, "namespace", "stagegate-system", "webhook Service namespace")
	gen.Flags().StringSliceVar(&extra, "host", nil, "additional DNS names or IPs")
	gen.Flags().BoolVar(&force, "force", false, "replace existing files")
	var cn string
	client := &cobra.Command{
		Use:   "client",
		Short: "Write a client certificate (client.crt, client.key) signed by the CA in --dir",
		Long: "Writes the client certificate kube-apiserver presents to the webhook, through the\n" +
			"kubeconfig of its AdmissionConfiguration. Point the server's admission.clientCAFile at\n" +
			"the CA's ca.crt, so that only the API server can send it reviews. Use a CA of its own\n" +
			"(e.g. `stagegate certs generate --dir client-ca` first), not the serving one.",
		Example: "  stagegate certs generate --dir client-ca && stagegate certs client --dir client-ca",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.GenerateClient(dir, cn, pki.Options{Force: force}); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote %s/{client.crt,client.key} for %q, signed by %s/ca.crt\n", dir, cn, dir)
			return nil
		},
	}
	client.Flags().StringVar(&dir, "dir", "certs", "directory of the CA, and of the output")
	client.Flags().StringVar(&cn, "cn", "kube-apiserver", "common name of the client")
	client.Flags().BoolVar(&force, "force", false, "replace existing files")
	cmd.AddCommand(gen, client)
	return cmd
}
