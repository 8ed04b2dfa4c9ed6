package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCluster(t *testing.T) {
	dir := t.TempDir()
	ca, crt, key := write(t, "ca"), write(t, "crt"), write(t, "key")
	tls := "tls: {caFile: " + ca + ", certFile: " + crt + ", keyFile: " + key + "}"
	three := "members: [{id: sg-0, address: \"a:8444\"}, {id: sg-1, address: \"b:8444\"}, {id: sg-2, address: \"c:8444\", nonVoter: true}]"
	for name, tc := range map[string]struct {
		file    string
		env     string // $STAGEGATE_CLUSTER_NODE_ID
		want    *Cluster
		wantErr string
	}{
		"absent is a single node": {file: "dataDir: " + dir + "\n"},
		"defaults": {
			file: "dataDir: " + dir + "\ncluster: {nodeID: sg-1, listen: \":8444\", " + three + ", " + tls + "}\n",
			want: &Cluster{NodeID: "sg-1", Listen: ":8444", DataDir: filepath.Join(dir, "raft"),
				Members: []Member{{ID: "sg-0", Address: "a:8444"}, {ID: "sg-1", Address: "b:8444"}, {ID: "sg-2", Address: "c:8444", NonVoter: true}},
				TLS:     PeerTLS{CAFile: ca, CertFile: crt, KeyFile: key}, StaleAfter: Duration(DefaultStaleAfter), RevocationWait: Duration(DefaultRevocationWait)},
		},
		"the environment names the node": {
			file: "cluster: {nodeID: sg-0, listen: \":8444\", dataDir: /r, staleAfter: 3s, revocationWait: 1s, " + three + ", " + tls + "}\n",
			env:  "sg-2",
			want: &Cluster{NodeID: "sg-2", Listen: ":8444", DataDir: "/r",
				Members: []Member{{ID: "sg-0", Address: "a:8444"}, {ID: "sg-1", Address: "b:8444"}, {ID: "sg-2", Address: "c:8444", NonVoter: true}},
				TLS:     PeerTLS{CAFile: ca, CertFile: crt, KeyFile: key}, StaleAfter: Duration(3 * time.Second), RevocationWait: Duration(time.Second)},
		},
		"adopt": {
			file: "dataDir: " + dir + "\ncluster: {nodeID: sg-1, listen: \":8444\", adopt: sg-0, " + three + ", " + tls + "}\n",
			want: &Cluster{NodeID: "sg-1", Listen: ":8444", DataDir: filepath.Join(dir, "raft"), Adopt: "sg-0",
				Members: []Member{{ID: "sg-0", Address: "a:8444"}, {ID: "sg-1", Address: "b:8444"}, {ID: "sg-2", Address: "c:8444", NonVoter: true}},
				TLS:     PeerTLS{CAFile: ca, CertFile: crt, KeyFile: key}, StaleAfter: Duration(DefaultStaleAfter), RevocationWait: Duration(DefaultRevocationWait)},
		},
		"adopt by an unknown member": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", adopt: sg-9, " + three + ", " + tls + "}\n",
			wantErr: `cluster.adopt "sg-9" is not in cluster.members`,
		},
		"adopt by a non-voter": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", adopt: sg-2, " + three + ", " + tls + "}\n",
			wantErr: `cluster.adopt "sg-2" is a non-voter`,
		},
		"unknown node": {
			file:    "cluster: {nodeID: sg-9, listen: \":8444\", " + three + ", " + tls + "}\n",
			wantErr: `cluster.nodeID "sg-9" is not in cluster.members`,
		},
		"no node ID": {
			file:    "cluster: {listen: \":8444\", " + three + ", " + tls + "}\n",
			wantErr: "cluster.nodeID must be set (or $STAGEGATE_CLUSTER_NODE_ID)",
		},
		"duplicate ids": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", members: [{id: sg-0, address: \"a:1\"}, {id: sg-0, address: \"b:1\"}], " + tls + "}\n",
			wantErr: `cluster.members[1]: id "sg-0" is listed twice`,
		},
		"duplicate addresses": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", members: [{id: sg-0, address: \"a:1\"}, {id: sg-1, address: \"a:1\"}], " + tls + "}\n",
			wantErr: "cluster.members[1] (sg-1): address a:1 is listed twice",
		},
		"member without address": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", members: [{id: sg-0}], " + tls + "}\n",
			wantErr: "cluster.members[0] (sg-0): address must be set",
		},
		"bad id": {
			file:    "cluster: {nodeID: SG_0, listen: \":8444\", members: [{id: SG_0, address: \"a:1\"}], " + tls + "}\n",
			wantErr: `cluster.members[0]: id "SG_0" must be a DNS label`,
		},
		"no voter": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", members: [{id: sg-0, address: \"a:1\", nonVoter: true}], " + tls + "}\n",
			wantErr: "cluster.members: at least one member must be a voter",
		},
		"no listen": {
			file:    "cluster: {nodeID: sg-0, " + three + ", " + tls + "}\n",
			wantErr: "cluster.listen must be set",
		},
		"missing TLS file": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", " + three + ", tls: {caFile: " + ca + ", certFile: " + filepath.Join(dir, "none.crt") + ", keyFile: " + key + "}}\n",
			wantErr: "cluster.tls.certFile: stat " + filepath.Join(dir, "none.crt"),
		},
		"no TLS": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", " + three + "}\n",
			wantErr: "cluster.tls.caFile must be set: peer traffic is mutual TLS",
		},
		"staleAfter too short": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", staleAfter: 100ms, " + three + ", " + tls + "}\n",
			wantErr: "cluster.staleAfter 100ms must be at least 1s",
		},
		"revocationWait too long": {
			file:    "cluster: {nodeID: sg-0, listen: \":8444\", revocationWait: 2m, " + three + ", " + tls + "}\n",
			wantErr: "cluster.revocationWait 2m0s must be between 0s and 1m",
		},
		"unknown field": {
			file:    "cluster: {peers: [a]}\n",
			wantErr: `unknown field "peers"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, tc.file))
			if err == nil {
				FromEnv(func(k string) (string, bool) {
					if k == ClusterNodeIDEnv && tc.env != "" {
						return tc.env, true
					}
					return "", false
				}).Apply(c)
				err = c.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Cluster, tc.want) {
				t.Fatalf("cluster = %+v, want %+v", c.Cluster, tc.want)
			}
		})
	}
}
