package main

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// body is one AdmissionReview request as the API server sends it.
type body struct {
	Name string
	JSON []byte
}

// reviewBodies returns a Pod and a Deployment CREATE review whose three
// containers are pinned to digests promoted to benchStage in the n-entry
// fixture (spread over the ledger, not the newest ones only).
func reviewBodies(n int) ([]body, error) {
	var images []string
	for _, i := range []int{n / 3, n / 2, n - 1} {
		images = append(images, repoOf(i)+"@"+digestOf(i))
	}
	return reviewBodiesFor(images)
}

// reviewBodiesFor is reviewBodies with the three containers pinned to
// images (digest references).
func reviewBodiesFor(images []string) ([]body, error) {
	spec := podSpec(images)
	labels := map[string]string{"app": "shop-web", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8c6b5"}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "shop-web-7d9f8c6b5-x2x8k", GenerateName: "shop-web-7d9f8c6b5-", Namespace: "shop",
			UID: "9c5e3f5e-0d3e-4f3e-9a59-3b5d6f7a8b9c", Labels: labels,
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "shop-web-7d9f8c6b5",
				UID: "0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7", Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
		},
		Spec: spec,
	}
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "shop-web", Namespace: "shop", Labels: map[string]string{"app": "shop-web"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop-web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
	}
	podJSON, err := review("pod", metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, pod.Name, pod)
	if err != nil {
		return nil, err
	}
	depJSON, err := review("deployment", metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, dep.Name, dep)
	if err != nil {
		return nil, err
	}
	return []body{{"pod", podJSON}, {"deployment", depJSON}}, nil
}

func review(uid string, gvk metav1.GroupVersionKind, gvr metav1.GroupVersionResource, name string, obj any) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	opts, _ := json.Marshal(metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}})
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:  types.UID("705ab4f5-6393-11e8-b7cc-42010a8000" + fmt.Sprintf("%02x", len(uid))),
			Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Name: name, Namespace: "shop", Operation: admissionv1.Create,
			UserInfo: authnv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller",
				UID: "4d3c2b1a-0000-4000-8000-000000000001", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			Object:  runtime.RawExtension{Raw: raw},
			DryRun:  ptr(false),
			Options: runtime.RawExtension{Raw: opts},
		},
	}
	return json.Marshal(ar)
}

func podSpec(images []string) corev1.PodSpec {
	names := []string{"web", "sidecar-proxy", "log-shipper"}
	var cs []corev1.Container
	for k, image := range images {
		cs = append(cs, corev1.Container{
			Name:  names[k],
			Image: image,
			Args:  []string{"--listen=:8080", "--log-format=json"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(8080 + k), Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
				{Name: "LOG_LEVEL", Value: "info"},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-abcde", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(int32(8080 + k))}},
				PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr(true), AllowPrivilegeEscalation: ptr(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		})
	}
	return corev1.PodSpec{
		Containers:                    cs,
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: ptr(int64(30)),
		DNSPolicy:                     corev1.DNSClusterFirst,
		ServiceAccountName:            "shop-web",
		SecurityContext:               &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))},
		SchedulerName:                 corev1.DefaultSchedulerName,
		Tolerations: []corev1.Toleration{
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
			{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
		},
		Volumes: []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}}},
		}}}},
		EnableServiceLinks: ptr(true),
		PreemptionPolicy:   ptr(corev1.PreemptLowerPriority),
	}
}

func ptr[T any](v T) *T { return &v }
