// Package v1alpha1 contains the regwire.dev/v1alpha1 API: RegistryMirror, which wires a
// cluster's nodes and namespaces to a private registry, and ImageSync, which copies images
// into it.
//
// Validation happens in three places, in this order: the API server (OpenAPI markers and CEL
// rules in this package), the controllers (what CEL cannot express: PEM parsing, regular
// expressions, semver ranges, references to other objects), and the node agent (what only a
// node can know).
//
// +kubebuilder:object:generate=true
// +groupName=regwire.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "regwire.dev", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this package to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the kinds of this package.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&RegistryMirror{}, &RegistryMirrorList{},
		&ImageSync{}, &ImageSyncList{},
		&RegistryNode{}, &RegistryNodeList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
