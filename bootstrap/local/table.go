package local

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/regwire/regwire/api/v1alpha1"
)

// resource is a regwire resource to print.
type resource struct {
	Name       string
	Namespaced bool
}

// tableAccept asks the API server for its server-side table, the one kubectl get prints:
// the columns come from the CRD's additionalPrinterColumns.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io"

// tables fetches each resource's server-side table across all namespaces.
func tables(ctx context.Context, cfg *rest.Config, resources []resource) ([]*metav1.Table, error) {
	rc := rest.CopyConfig(cfg)
	rc.GroupVersion = &v1alpha1.GroupVersion
	rc.APIPath = "/apis"
	rc.NegotiatedSerializer = serializer.WithoutConversionCodecFactory{CodecFactory: scheme.Codecs}
	client, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, err
	}
	out := make([]*metav1.Table, 0, len(resources))
	for _, r := range resources {
		raw, err := client.Get().Resource(r.Name).SetHeader("Accept", tableAccept).Do(ctx).Raw()
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", r.Name, err)
		}
		t := &metav1.Table{}
		if err := json.Unmarshal(raw, t); err != nil {
			return nil, fmt.Errorf("decoding %s table: %w", r.Name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// formatTables prints tables one after the other. With withAges false it leaves out the
// date columns (the API server renders them as ages such as 5s), which makes the output
// change only when the objects do.
func formatTables(resources []resource, ts []*metav1.Table, withAges bool) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteString("\n")
		}
		writeTable(&b, resources[i], t, withAges)
	}
	return b.String()
}

// writeTable formats t like kubectl get -A -o wide.
func writeTable(b *strings.Builder, r resource, t *metav1.Table, withAges bool) {
	if len(t.Rows) == 0 {
		fmt.Fprintf(b, "No %s found.\n", r.Name)
		return
	}
	w := tabwriter.NewWriter(b, 0, 8, 3, ' ', 0)
	var cols []int
	var header []string
	if r.Namespaced {
		header = append(header, "NAMESPACE")
	}
	for i, c := range t.ColumnDefinitions {
		if c.Type == "date" && !withAges {
			continue
		}
		cols = append(cols, i)
		header = append(header, strings.ToUpper(c.Name))
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, row := range t.Rows {
		var cells []string
		if r.Namespaced {
			var meta metav1.PartialObjectMetadata
			_ = json.Unmarshal(row.Object.Raw, &meta)
			cells = append(cells, meta.Namespace)
		}
		for _, i := range cols {
			cells = append(cells, cell(row.Cells[i]))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
}

func cell(v any) string {
	if s := fmt.Sprint(v); v != nil && s != "" {
		return s
	}
	return "<none>"
}
