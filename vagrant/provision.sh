#!/bin/sh
# vagrant/provision.sh - makes a Debian VM a node of a DPR cluster: installs
# the packages built from this tree (`make deb`), writes /etc/dpr/agent.conf
# for a cluster of agents (Raft) and starts dpr-agent. Run as root inside
# the VM; the Vagrantfile's shell provisioner runs it, and so does
# tests/vm/ (`make vm-test`) over ssh:
#
#   provision.sh DEB_DIR NAME ADDRESS PEER_ADDRESS...
#
# DEB_DIR holds dpr-cluster_*.deb and libdpr0_*.deb; NAME is the node's
# name; ADDRESS its IPv4 address on the cluster's network (the agent's
# finder, Raft, replication and control over TCP listen there); the peers
# are the addresses of every node of the cluster, this one included.
# Variables: DPR_CLUSTER (cluster name, default "vagrant"),
# DPR_ELECTION_MS (raft.election_timeout_ms, default 1000: TCG VMs are slow).
set -eu

[ $# -ge 4 ] || { echo "usage: provision.sh DEB_DIR NAME ADDRESS PEER_ADDRESS..." >&2; exit 2; }
debs=$1 name=$2 addr=$3
shift 3
cluster=${DPR_CLUSTER:-vagrant}
election=${DPR_ELECTION_MS:-1000}
peers=""
for p in "$@"; do peers="$peers${peers:+, }\"$p:7400\""; done

# the packages: apt fetches missing dependencies when the VM has a network
# to a mirror; a box of vagrant/build-box.sh has them all already
set -- "$debs"/libdpr0_*.deb "$debs"/dpr-cluster_*.deb
[ -f "$1" ] && [ -f "$2" ] || { echo "provision.sh: no libdpr0 and dpr-cluster .deb in $debs" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -i "$@" >/dev/null 2>&1; then
    apt-get update -q
    apt-get install -y -q "$@"
fi

hostnamectl set-hostname "$name" 2>/dev/null || echo "$name" > /etc/hostname
cat > /etc/dpr/agent.conf <<EOT
# Written by vagrant/provision.sh: node $name of the cluster "$cluster".
cluster = "$cluster";
node = { name = "$name"; address = "$addr"; };
finder = { listen = "$addr:7000"; };
control = { listen = "$addr:7002"; remote_access = "read-only"; };
raft = {
  address = "$addr:7400";
  peers = [ $peers ];
  election_timeout_ms = $election;
  heartbeat_timeout_ms = $((election / 10));
};
EOT
dpr-agent --check-config /etc/dpr/agent.conf
systemctl enable dpr-agent
systemctl restart dpr-agent
echo "provision.sh: $name ($addr) runs dpr-agent of cluster $cluster, peers $peers"
