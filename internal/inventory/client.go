package inventory

// The client-side rate limit the controller's Kubernetes client should
// have (rest.Config QPS and Burst). client-go's default, 5/s with bursts of
// 10, spaces a full sweep's report writes, one per gated namespace, 200 ms
// apart: 20 s for 100 namespaces. The API server's own priority and
// fairness still protects it from this client.
const (
	ClientQPS   = 50
	ClientBurst = 100
)
