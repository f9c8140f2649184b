#!/usr/bin/env bash
# Make /dev/kvm usable by this user, or say in one line how. GitHub's
# Ubuntu runners have /dev/kvm as root:kvm 0660 and a runner user outside
# the kvm group, so QEMU cannot open it until a udev rule opens it up; the
# action (ci/action) and the workflows run this before any boot.
#
#   ci/kvm.sh             exit 0: usable, or no /dev/kvm at all (TCG)
#   REQUIRE=1 ci/kvm.sh   no /dev/kvm is a failure too (the soak)
#
# Exit 1 with a ::error:: line naming the fix when it stays unusable.
set -euo pipefail
dev=${REPRO_KVM_DEVICE:-/dev/kvm}
usable() { [ -r "$dev" ] && [ -w "$dev" ]; }
if [ ! -e "$dev" ]; then
  if [ "${REQUIRE:-0}" = 1 ]; then
    echo "::error::this runner has no $dev: KVM is required here (a soak under TCG would never finish); use a runner with KVM (GitHub's ubuntu-24.04 has it)"
    exit 1
  fi
  echo "kvm: no $dev on this machine: guests run under TCG" >&2
  exit 0
fi
if usable; then
  echo "kvm: $dev is usable by $(id -un)" >&2
  exit 0
fi
# Passwordless sudo and udev, as on GitHub's hosted runners.
if [ "$dev" = /dev/kvm ] && command -v udevadm >/dev/null && sudo -n true 2>/dev/null; then
  echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' | sudo tee /etc/udev/rules.d/99-kvm4all.rules >/dev/null
  sudo udevadm control --reload-rules
  sudo udevadm trigger --name-match=kvm
  for _ in 1 2 3 4 5 6 7 8 9 10; do usable && break; sleep 0.5; done
fi
if usable; then
  echo "kvm: $dev opened to all users with a udev rule" >&2
  exit 0
fi
echo "::error::$dev exists but $(id -un) cannot open it, and no passwordless sudo and udev could change that: run 'sudo chmod 666 $dev' (or add $(id -un) to the kvm group) before this step, or pass require-kvm: false to accept TCG"
exit 1
