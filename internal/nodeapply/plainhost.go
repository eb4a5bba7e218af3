package nodeapply

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/regwire/regwire/api/v1alpha1"
	"github.com/regwire/regwire/internal/nodeconfig"
)

// PlainHostMirror is a RegistryMirror as a host without a cluster applies it (`regwire
// node apply`): its CA from spec.caBundle, and its client certificate, when it asks for
// one, from clientCerts holding <mirror>.crt and <mirror>.key (the layout of the agents'
// Secret). What only a cluster can read is refused, naming the field and the fix.
func PlainHostMirror(rm *v1alpha1.RegistryMirror, clientCerts string) (nodeconfig.Mirror, error) {
	if rm.Spec.CAFrom != nil {
		return nodeconfig.Mirror{}, fmt.Errorf("RegistryMirror %s: spec.caFrom reads a Secret or ConfigMap from a cluster; on a plain host put the PEM in spec.caBundle", rm.Name)
	}
	m := nodeconfig.Mirror{Name: rm.Name, Created: rm.CreationTimestamp.Time, Spec: rm.Spec, CA: []byte(rm.Spec.CABundle)}
	if rm.Spec.ClientCertificateSecretRef == nil {
		return m, nil
	}
	if clientCerts == "" {
		return nodeconfig.Mirror{}, fmt.Errorf("RegistryMirror %s: spec.clientCertificateSecretRef reads a Secret from a cluster; on a plain host give --client-certificates DIR holding %s.crt and %s.key", rm.Name, rm.Name, rm.Name)
	}
	certName, keyName := nodeconfig.ClientCertificateKeys(rm.Name)
	var err error
	if m.ClientCert, err = os.ReadFile(filepath.Join(clientCerts, certName)); err == nil {
		m.ClientKey, err = os.ReadFile(filepath.Join(clientCerts, keyName))
	}
	if err != nil {
		return nodeconfig.Mirror{}, fmt.Errorf("RegistryMirror %s: --client-certificates: %w", rm.Name, err)
	}
	return m, nil
}
