package bootstrap

import (
	"fmt"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// ComposeOptions describe the Nexus + nginx stack.
type ComposeOptions struct {
	// Project is the compose project name (default regwire).
	Project string
	// NexusImage and NginxImage pin the images (defaults DefaultNexusImage,
	// DefaultNginxImage).
	NexusImage, NginxImage string
	// HTTPSPort and HTTPPort are published on the Docker host (defaults 443 and 80).
	HTTPSPort, HTTPPort int
}

// Images the stack runs unless told otherwise. Nexus must be 3.83.0 or later: older
// versions have no per-repository path-based routing (nexus.PathRoutingVersion), so
// nexus.local/my-docker/busybox would reach no repository.
const (
	DefaultNexusImage = "sonatype/nexus3:3.89.1"
	DefaultNginxImage = "nginx:1.27-alpine"
)

// Names in the compose project that other steps rely on.
const (
	NexusService  = "nexus"
	ProxyService  = "proxy"
	NexusVolume   = "nexus-data"
	ComposeFile   = "docker-compose.yaml"
	NginxConfFile = "nginx.conf"
	// NexusPort is where Nexus listens inside the compose network.
	NexusPort = 8081
)

// RenderCompose returns docker-compose.yaml for the stack, built from compose-spec's own
// Go types: Nexus with its data on a named volume and a health check on its REST status
// endpoint; nginx with the generated nginx.conf and certificate, started once Nexus is
// healthy. Paths are relative to the state directory the file lives in.
func RenderCompose(o ComposeOptions) ([]byte, error) {
	if o.Project == "" {
		o.Project = "regwire"
	}
	if o.NexusImage == "" {
		o.NexusImage = DefaultNexusImage
	}
	if o.NginxImage == "" {
		o.NginxImage = DefaultNginxImage
	}
	if o.HTTPSPort == 0 {
		o.HTTPSPort = 443
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 80
	}
	dur := func(d time.Duration) *types.Duration { v := types.Duration(d); return &v }
	retries := uint64(30)
	network := o.Project
	p := &types.Project{
		Name: o.Project,
		Services: types.Services{
			NexusService: {
				Name:    NexusService,
				Restart: types.RestartPolicyUnlessStopped,
				ContainerSpec: types.ContainerSpec{
					Image:    o.NexusImage,
					Volumes:  []types.ServiceVolumeConfig{{Type: types.VolumeTypeVolume, Source: NexusVolume, Target: "/nexus-data"}},
					Networks: map[string]*types.ServiceNetworkConfig{network: nil},
				},
				WorkloadSpec: types.WorkloadSpec{
					HealthCheck: &types.HealthCheckConfig{
						Test:        types.HealthCheckTest{"CMD-SHELL", fmt.Sprintf("curl -fsS http://localhost:%d/service/rest/v1/status/writable || exit 1", NexusPort)},
						Interval:    dur(10 * time.Second),
						Timeout:     dur(5 * time.Second),
						Retries:     &retries,
						StartPeriod: dur(2 * time.Minute),
					},
				},
			},
			ProxyService: {
				Name:    ProxyService,
				Restart: types.RestartPolicyUnlessStopped,
				ContainerSpec: types.ContainerSpec{
					Image: o.NginxImage,
					Volumes: []types.ServiceVolumeConfig{
						{Type: types.VolumeTypeBind, Source: "./" + NginxConfFile, Target: "/etc/nginx/nginx.conf", ReadOnly: true},
						{Type: types.VolumeTypeBind, Source: "./tls/" + ServerCertFile, Target: "/etc/nginx/ssl/" + ServerCertFile, ReadOnly: true},
						{Type: types.VolumeTypeBind, Source: "./tls/" + ServerKeyFile, Target: "/etc/nginx/ssl/" + ServerKeyFile, ReadOnly: true},
					},
					Networks: map[string]*types.ServiceNetworkConfig{network: nil},
				},
				WorkloadSpec: types.WorkloadSpec{
					Ports: []types.ServicePortConfig{
						{Target: 443, Published: fmt.Sprint(o.HTTPSPort), Protocol: "tcp", Mode: "ingress"},
						{Target: 80, Published: fmt.Sprint(o.HTTPPort), Protocol: "tcp", Mode: "ingress"},
					},
					DependsOn: types.DependsOnConfig{NexusService: {Condition: types.ServiceConditionHealthy, Required: true}},
				},
			},
		},
		Networks: types.Networks{network: {Name: network}},
		Volumes:  types.Volumes{NexusVolume: {Name: o.Project + "_" + NexusVolume}},
	}
	return p.MarshalYAML()
}
