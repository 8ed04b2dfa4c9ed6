package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/manifests"
	"github.com/stagegate/stagegate/internal/pki"
)

// Defaults of `certs generate` with --peers: the peers' material apart
// from the webhook's, and the headless Service `stagegate manifests
// --replicas` makes.
const (
	defaultPeerDir     = "certs/peers"
	defaultPeerService = "stagegate-peers"
)

const peersLong = "Without --peers: a CA and the webhook's serving certificate, for the Service's names.\n\n" +
	"With --peers: the certificates of the replicas' peer port (Raft and write forwarding, mutual\n" +
	"TLS). One peer CA (ca.crt, ca.key) and, per member ID, a directory <id>/ with ca.crt, tls.crt\n" +
	"and tls.key: the member's Secret <id>-peer (kubectl create secret generic ...\n" +
	"--from-file=<dir>/<id>/). ca.key stays with you and goes into no Secret. Each certificate is\n" +
	"for server and client authentication, names <id>.<service>.<namespace>.svc (and its\n" +
	".cluster.local form) and carries the member ID as its CN and as the URI SAN\n" +
	pki.PeerURIPrefix + "<id>. An existing peer CA in --dir signs the new certificates, so that\n" +
	"members can be added later; existing member files are replaced only with --force."

// generatePeers runs `certs generate --peers`. dir and service default to
// the peers' own when not given.
func generatePeers(s Streams, cmd *cobra.Command, ids []string, dir, service, namespace string, hosts []string, force bool) error {
	if !cmd.Flags().Changed("dir") {
		dir = defaultPeerDir
	}
	if !cmd.Flags().Changed("service") {
		service = defaultPeerService
	}
	o := pki.PeerOptions{IDs: ids, Service: service, Namespace: namespace, Hosts: hosts, Force: force}
	if err := pki.GeneratePeers(dir, o); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "wrote %s/{ca.crt,ca.key}; keep ca.key out of the cluster\n", dir)
	for _, id := range ids {
		fmt.Fprintf(s.Out, "wrote %s/{ca.crt,tls.crt,tls.key} for %s (%v): kubectl -n %s create secret generic %s --from-file=%s/\n",
			filepath.Join(dir, id), id, pki.PeerHosts(id, service, namespace), namespace, pki.PeerSecretName(id), filepath.Join(dir, id))
	}
	return nil
}

// notePeers says on stderr which Secrets the members of a replicated
// installation wait for, and how to make them.
func notePeers(s Streams, o manifests.Options) {
	if o.Replicas <= 1 {
		return
	}
	ids := manifests.MemberIDs(o)
	fmt.Fprintf(s.Err, "note: the members start once their peer Secrets exist:\n"+
		"  stagegate certs generate --peers %s --service %s-peers --namespace %s\n",
		strings.Join(ids, ","), o.Service, o.Namespace)
	for _, id := range ids {
		fmt.Fprintf(s.Err, "  kubectl -n %s create secret generic %s --from-file=%s/\n", o.Namespace, pki.PeerSecretName(id), filepath.Join(defaultPeerDir, id))
	}
}

// validateForManifests validates cfg as `manifests` reads it. A cluster:
// section is validated without its member ID and peer files: they are
// the pods' (the manifests write the members, the files and the ID's
// environment variable), not this machine's, and only its timings are
// taken.
func validateForManifests(cfg *config.Config) error {
	if cfg.Cluster == nil {
		return cfg.Validate()
	}
	c := *cfg.Cluster
	c.Members = slices.Clone(c.Members)
	if len(c.Members) == 0 {
		c.Members = []config.Member{{ID: "manifests", Address: "manifests:1"}}
	}
	c.NodeID = c.Members[0].ID
	// Placeholders that exist, so that Validate checks the rest.
	c.TLS = config.PeerTLS{CAFile: os.DevNull, CertFile: os.DevNull, KeyFile: os.DevNull}
	orig := cfg.Cluster
	cfg.Cluster = &c
	err := cfg.Validate()
	orig.StaleAfter, orig.RevocationWait = c.StaleAfter, c.RevocationWait
	cfg.Cluster = orig
	return err
}
