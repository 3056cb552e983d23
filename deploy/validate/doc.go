// Package validate holds the tests that keep the deployment files — the
// Dockerfile, docker-compose.yml and the Helm chart under deploy/k8s — true
// to the services, without a Docker engine or a cluster: every environment
// variable they set is one a service reads, every required one is set, the
// images name services that exist, and ports and probes meet what the
// services serve.
package validate
