package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/config"
)

// fluxSourcesVersion is the API version the informers list: source
// -controller v1.7.0 serves HelmRepository, HelmChart and OCIRepository
// as v1, and the API server converts whatever version an object was
// written in.
const fluxSourcesVersion = "v1"

// fluxSources is admission.Sources from informers on the Flux source
// kinds: a review reads the cache, namespaced by the lister, and makes no
// API call for an object the cache holds. An object it does not hold (yet)
// is asked for once, by namespace and name, with a short timeout: Flux
// applies a HelmRepository and the HelmChart that names it together, and
// the HelmChart's review would otherwise race the watch and be refused for
// a repository created a millisecond before. The API server's answer is
// then authoritative; if it cannot answer, the review refuses (fails
// closed). The client's rate limit bounds what made-up names can cost.
type fluxSources struct {
	factory dynamicinformer.DynamicSharedInformerFactory
	dyn     dynamic.Interface
	gvrs    map[string]schema.GroupVersionResource
	listers map[string]cache.GenericLister
	synced  map[string]cache.InformerSynced
	stop    func()
}

// sourceGetTimeout bounds the API call for an object the cache misses,
// well within a review's timeout (admission.timeout, default 4s), which
// may need two (a HelmRelease's HelmChart, then its HelmRepository).
const sourceGetTimeout = time.Second

// Rate limit of the client that asks for objects the cache misses.
const (
	sourceClientQPS   = 20
	sourceClientBurst = 40
)

// buildSources makes the informers of admission.sources; start runs them.
func buildSources(cfg config.AdmissionSources) (*fluxSources, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("admission sources: kubernetes client (admission.sources.kubeconfig %q): %w", cfg.Kubeconfig, err)
	}
	rc.UserAgent = "stagegate"
	rc.QPS, rc.Burst = sourceClientQPS, sourceClientBurst
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("admission sources: %w", err)
	}
	// A resync would only replay the cache; the watch keeps it current.
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	s := &fluxSources{factory: f, dyn: dyn, gvrs: map[string]schema.GroupVersionResource{},
		listers: map[string]cache.GenericLister{}, synced: map[string]cache.InformerSynced{}}
	for kind, resource := range admission.SourceKinds {
		gvr := schema.GroupVersionResource{Group: admission.FluxSourceGroup, Version: fluxSourcesVersion, Resource: resource}
		s.gvrs[kind] = gvr
		inf := f.ForResource(gvr)
		// Only metadata and spec are read: the cache keeps no managed
		// fields, status or last-applied copy, which would make it several
		// times larger.
		if err := inf.Informer().SetTransform(trimSource); err != nil {
			return nil, fmt.Errorf("admission sources: %w", err)
		}
		s.listers[kind] = inf.Lister()
		s.synced[kind] = inf.Informer().HasSynced
	}
	return s, nil
}

// trimSource drops what admission never reads from a cached object.
func trimSource(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	u.SetManagedFields(nil)
	delete(u.Object, "status")
	if a := u.GetAnnotations(); a != nil {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
		u.SetAnnotations(a)
	}
	return u, nil
}

// start runs the informers until stop is called.
func (s *fluxSources) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.factory.Start(ctx.Done())
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			s.factory.Shutdown()
		})
	}
}

// Source implements admission.Sources.
func (s *fluxSources) Source(kind, namespace, name string) (json.RawMessage, bool, error) {
	l, ok := s.listers[kind]
	if !ok {
		return nil, false, fmt.Errorf("admission sources: %s is not watched", kind)
	}
	var u *unstructured.Unstructured
	if s.synced[kind]() {
		obj, err := l.ByNamespace(namespace).Get(name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, false, fmt.Errorf("admission sources: %w", err)
		}
		if err == nil {
			if u, ok = obj.(*unstructured.Unstructured); !ok {
				return nil, false, fmt.Errorf("admission sources: %s %s/%s is a %T", kind, namespace, name, obj)
			}
		}
	}
	if u == nil {
		ctx, cancel := context.WithTimeout(context.Background(), sourceGetTimeout)
		defer cancel()
		got, err := s.dyn.Resource(s.gvrs[kind]).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("admission sources: %s %s/%s is not in the cache, and the API server did not answer for it: %w", kind, namespace, name, err)
		}
		u = got
	}
	b, err := u.MarshalJSON()
	if err != nil {
		return nil, false, fmt.Errorf("admission sources: %w", err)
	}
	return b, true, nil
}
