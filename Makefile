# Everyday targets. `make help` lists them. Variables: NS (namespace), RELEASE, VALUES (a value
# file of deploy/helm/flotilla), IMAGE, SERVICE (for logs), KIND_CLUSTER.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

NS ?= flotilla
RELEASE ?= flotilla
VALUES ?= values-kind.yaml
IMAGE ?= flotilla:local
SERVICE ?= gateway
KIND_CLUSTER ?= flotilla
CHART := deploy/helm/flotilla
COMPOSE := docker compose -f deploy/compose/compose.yaml
# ingress-nginx for kind (its documented manifest); override to use a mirror.
INGRESS_NGINX_KIND ?= https://raw.githubusercontent.com/kubernetes/ingress-nginx/main/deploy/static/provider/kind/deploy.yaml
# Base images of the Dockerfile's stages (see the Dockerfile's header).
RUST_IMAGE ?= docker.io/library/rust:1.94-slim-bookworm
RUNTIME_IMAGE ?= gcr.io/distroless/cc-debian12:nonroot

.PHONY: help build test run image kind-up kind-load deploy status health logs down manifests lint-deploy compose-up compose-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## release build of the flotilla binary
	cargo build --release --locked

test: ## every test (throwaway PostgreSQL, NATS, Redis; helm for tests/deploy.rs)
	cargo test --workspace --locked

run: ## everything in one process on http://127.0.0.1:8080 (SQLite in ./data)
	cargo run --release

image: ## the container image $(IMAGE) (one image, every service)
	docker build --build-arg RUST_IMAGE=$(RUST_IMAGE) --build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE) -t $(IMAGE) .

kind-up: ## a 3-node kind cluster with ingress-nginx (deploy/kind/kind-config.yaml)
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --config deploy/kind/kind-config.yaml --name $(KIND_CLUSTER)
	kubectl apply -f $(INGRESS_NGINX_KIND)
	kubectl -n ingress-nginx wait --for=condition=ready pod -l app.kubernetes.io/component=controller --timeout=180s

kind-load: ## load $(IMAGE) into the kind nodes (no registry)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

deploy: ## helm upgrade --install with $(VALUES) into namespace $(NS) (restricted Pod Security)
	kubectl get namespace $(NS) >/dev/null 2>&1 || kubectl create namespace $(NS)
	kubectl label --overwrite namespace $(NS) pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
	helm upgrade --install $(RELEASE) $(CHART) -n $(NS) -f $(CHART)/$(VALUES) --wait --timeout 10m

status: ## pods, services, autoscalers, disruption budgets, ingress of the release
	helm status $(RELEASE) -n $(NS)
	kubectl -n $(NS) get pods,svc,hpa,pdb,ingress,networkpolicy -l app.kubernetes.io/instance=$(RELEASE) -o wide

health: ## the gateway's aggregated /health from inside the cluster (helm test)
	helm test $(RELEASE) -n $(NS) --logs

logs: ## follow the logs of SERVICE=$(SERVICE)
	kubectl -n $(NS) logs -f --prefix --tail=100 -l app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component=$(SERVICE)

down: ## uninstall the release and delete the kind cluster
	-helm uninstall $(RELEASE) -n $(NS) --wait
	-kind delete cluster --name $(KIND_CLUSTER)

manifests: ## re-render the plain manifests in deploy/k8s from the chart
	deploy/k8s/render.sh

lint-deploy: ## every deployment check (.ci/deploy-checks)
	.ci/deploy-checks

compose-up: ## the whole system with docker compose (needs deploy/compose/.env, see .env.example)
	$(COMPOSE) up -d
	@echo "health: curl -s http://127.0.0.1:8080/health"

compose-down: ## stop the compose deployment (volumes kept; add -v by hand to drop them)
	$(COMPOSE) down
