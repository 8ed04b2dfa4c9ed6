package registry

import (
	"fmt"
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// Predicate types the scenarios attest and require.
const (
	promotionType  = "https://stagegate.dev/promotion/v1"
	revocationType = "https://stagegate.dev/revocation/v1"
	provenanceType = "https://slsa.dev/provenance/v1"
)

// suite is the shared environment of every scenario.
type suite struct {
	tools *tools
	// reg is the open registry both clusters pull from; prot requires
	// basic auth and is the copy target.
	reg, prot *framework.Registry
	// protCreds is a Docker config directory with prot's credentials.
	protCreds string
	// a promotes, with registry attestations, stage tags and a copy to
	// prot; b shares no ledger with a and trusts a's key through the
	// registry; c is promotion-only, with an evidence gate and a copy
	// target it has no credentials for.
	a, b, c *node
	// pipelineKey signs provenance that c trusts; untrustedKey is trusted
	// by nobody.
	pipelineKey, untrustedKey string
	untrustedPub              string
	// revocations is where a publishes its revocation list, and b reads it.
	revocations string
	// promoted is the image the federation scenario promoted to prod in
	// a and b admitted; the outage scenario expects b to keep admitting it.
	promoted string
}

// newSuite starts two API servers, two registries and three stagegates.
func newSuite(t *testing.T) *suite {
	t.Helper()
	s := &suite{tools: newTools(t)}
	s.reg = framework.StartRegistry(t)
	s.prot = framework.StartRegistry(t, framework.WithHtpasswd("mirror", "mirror-secret"))
	s.protCreds = dockerConfig(t, s.prot.Addr, s.prot.Authenticator())
	var pipelinePub string
	s.pipelineKey, pipelinePub = s.tools.generateKey(t, "pipeline")
	s.untrustedKey, s.untrustedPub = s.tools.generateKey(t, "untrusted")

	registries := fmt.Sprintf("registries:\n- {host: %q, insecure: true}\n- {host: %q, insecure: true}\n", s.reg.Addr, s.prot.Addr)
	s.revocations = s.reg.Repo("stagegate/revocations") + ":latest"

	s.a = newNode(t, "cluster-a", nodeOptions{
		api: framework.StartAPIServer(t),
		env: []string{"DOCKER_CONFIG=" + s.protCreds},
		config: registries + fmt.Sprintf(`revocationList: {reference: %q}
stages:
- {name: dev, groups: [e2e], minSoak: 0s, tag: "{{stage}}"}
- {name: test, groups: [e2e], minSoak: 0s}
- {name: stage, groups: [e2e], minSoak: 0s, attest: true, target: %q}
- {name: prod, groups: [e2e], minSoak: 0s, attest: true, tag: "{{repository}}:{{stage}}"}
`, s.revocations, s.prot.Repo("mirror")),
	})
	s.b = newNode(t, "cluster-b", nodeOptions{
		api: framework.StartAPIServer(t),
		env: []string{"DOCKER_CONFIG=" + s.tools.anonymous(t)},
		config: registries + fmt.Sprintf(`registrySource:
  enabled: true
  trustedKeys: [%q]
  refresh: 1s
  revocationLists: [%q]
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
- {name: test, groups: [e2e], minSoak: 0s}
- {name: stage, groups: [e2e], minSoak: 0s}
- {name: prod, groups: [e2e], minSoak: 0s}
`, s.a.cosignPub(), s.revocations),
	})
	s.c = newNode(t, "promoter-c", nodeOptions{
		env: []string{"DOCKER_CONFIG=" + s.tools.anonymous(t)},
		config: registries + fmt.Sprintf(`evidenceKeys: [%q]
stages:
- {name: verified, groups: [e2e], requiredEvidence: [%q]}
- {name: mirror, groups: [e2e], minSoak: 0s, target: %q}
`, pipelinePub, provenanceType, s.prot.Repo("nocreds")),
	})
	return s
}

// TestRegistryNative runs every scenario of issue 4 against one set of
// servers. Subtests run in order; the last one stops the open registry.
func TestRegistryNative(t *testing.T) {
	s := newSuite(t)
	t.Run("clusters that share no ledger", s.testFederation)
	t.Run("untrusted attestation", s.testUntrusted)
	t.Run("revocation through the registry", s.testRevocation)
	t.Run("revocation withheld from the image", s.testWithheldRevocation)
	t.Run("registry source of unknown freshness", s.testUnknownFreshness)
	t.Run("copy between registries", s.testCopy)
	t.Run("copy without credentials", s.testCopyNoCredentials)
	t.Run("evidence gate", s.testEvidence)
	t.Run("registry outage", s.testOutage)
}
