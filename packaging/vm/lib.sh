# shellcheck shell=bash
# Sourceable helpers to boot the forky test VM (packaging/vm/image.sh) under QEMU TCG (KVM fails
# on the CI machines) and drive it over ssh. Every call is bounded in time, and a VM never
# outlives the script that started it (a watcher kills it when that script is gone, even after
# kill -9), so nothing hangs CI or lingers after it.
#
#   vm_start [IMAGE]          boot a throw-away copy-on-write copy of IMAGE (an image directory
#                             from image.sh or its disk.img; default: image.sh's, built if
#                             missing) and wait for ssh (vm_wait_ssh). VM_NO_WAIT=1: don't wait.
#                             A guest kernel panic before ssh boots it once more (below).
#   vm_wait_ssh [SECS]        wait until ssh answers (default 600 s: a TCG boot on a busy machine took 295 s); on timeout or a dead QEMU,
#                             print the serial console's tail and fail
#   vm_ssh CMD...             run CMD as root in the VM (killed after VM_SSH_TIMEOUT, 600 s)
#   vm_run [--timeout S] CMD  the same with its own limit (default 60 s)
#   vm_scp_to SRC... DST      copy files into the VM (vm_copy_in: the same)
#   vm_host_port GUESTPORT    host port forwarded to 22, 8000 or 8001 in the VM
#   vm_stop                   poweroff (30 s), then kill; removes the run directory
#
# After vm_start: PORT_SSH, PORT_HTTP (-> 8000), PORT_HTTP2 (-> 8001), VM_CONSOLE (the serial
# log), VM_RUN (the run directory), VM_DIR (the image directory). VM_MEM (2048) and VM_SMP (2)
# size the VM; VM_MAX_SECONDS (3600) is a hard limit on its life.

VM_DIR=${VM_DIR:-}
VM_RUN=${VM_RUN:-}
VM_SSH_PORT="" PORT_SSH="" PORT_HTTP="" PORT_HTTP2="" VM_CONSOLE=""
declare -A VM_FWD=()

# A port that was free a moment ago (the kernel's choice for port 0). QEMU binds it a few hundred
# milliseconds later; a clash then makes vm_start fail loudly, not hang.
_vm_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_vm_ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ConnectTimeout=20 -o BatchMode=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=6)

vm_ssh() {
    timeout -k 5 "${VM_SSH_TIMEOUT:-600}" \
        ssh -i "$VM_DIR/id_ed25519" "${_vm_ssh_opts[@]}" -p "$VM_SSH_PORT" root@127.0.0.1 "$@"
}

# vm_run [--timeout SECS] CMD: vm_ssh with its own time limit (default 60 s).
vm_run() {
    local t=60
    if [[ $1 == --timeout ]]; then t=$2; shift 2; fi
    VM_SSH_TIMEOUT=$t vm_ssh "$@"
}

vm_scp_to() {
    (($# >= 2)) || { echo "usage: vm_scp_to SRC... DST" >&2; return 2; }
    local dst=${*: -1}
    timeout -k 5 "${VM_SCP_TIMEOUT:-300}" scp -q -i "$VM_DIR/id_ed25519" "${_vm_ssh_opts[@]}" \
        -P "$VM_SSH_PORT" "${@:1:$#-1}" "root@127.0.0.1:$dst"
}
vm_copy_in() { vm_scp_to "$@"; }

vm_host_port() {
    local p=${VM_FWD[$1]:-}
    [[ -n $p ]] || { echo "vm_host_port: no forward for guest port $1" >&2; return 1; }
    echo "$p"
}

# vm_start: one boot, and once more if the guest kernel panicked before ssh came up. Under QEMU
# TCG the guest kernel has panicked early in boot (sched_clock_cpu in an interrupt, 1.6 s in,
# before any userspace ran): the emulator's flake, not the code under test. panic=-1 on the
# kernel line makes such a guest reset at once, and -no-reboot turns the reset into QEMU's exit,
# so the panic is seen in seconds; a second boot from the same clean image follows. Any other
# failure (no ssh, QEMU refusing its options) fails at once, as does a second panic.
vm_start() {
    # VM_FIRST_BOOT_APPEND: kernel arguments for the first boot only, to see this retry work
    # (packaging/vm/test-boot-retry.sh makes that boot panic).
    _vm_boot "${VM_FIRST_BOOT_APPEND:-}" "$@" && return 0
    [[ -n $VM_RUN && -f $VM_CONSOLE ]] && grep -q 'Kernel panic' "$VM_CONSOLE" || return 1
    echo "vm: the guest kernel panicked while booting (console above); booting again from the clean image (attempt 2 of 2)" >&2
    vm_stop
    _vm_boot "" "$@"
}

# _vm_boot EXTRA [IMAGE]: one boot, EXTRA appended to the kernel line.
_vm_boot() {
    local extra=$1 image=${2:-} base q
    if [[ -z $image ]]; then
        image=$("$(dirname "${BASH_SOURCE[0]}")/image.sh") || return 1
    fi
    if [[ -d $image ]]; then VM_DIR=$image; else VM_DIR=$(dirname "$image"); fi
    base=$VM_DIR/disk.img
    [[ -f $base && -f $VM_DIR/vmlinuz && -f $VM_DIR/initrd.img ]] ||
        { echo "vm_start: no image in $VM_DIR" >&2; return 1; }
    command -v qemu-system-x86_64 >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
    command -v qemu-img >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
    command -v ssh >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-client >/dev/null

    VM_RUN=$(mktemp -d /tmp/picker-vm.XXXXXX)
    VM_CONSOLE=$VM_RUN/console.log
    PORT_SSH=$(_vm_free_port) PORT_HTTP=$(_vm_free_port) PORT_HTTP2=$(_vm_free_port)
    VM_SSH_PORT=$PORT_SSH
    VM_FWD=([22]=$PORT_SSH [8000]=$PORT_HTTP [8001]=$PORT_HTTP2)
    # Copy-on-write over the cached image: every run starts from the same clean disk, and the
    # cached image is never written to.
    qemu-img create -q -f qcow2 -b "$base" -F raw "$VM_RUN/disk.qcow2" || return 1
    # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
    q=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "${VM_SMP:-2}" -m "${VM_MEM:-2048}"
        -display none -monitor none -no-reboot -serial "file:$VM_CONSOLE"
        -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initrd.img"
        -append "root=/dev/vda rw console=ttyS0 panic=-1${extra:+ $extra}"
        -drive "file=$VM_RUN/disk.qcow2,if=virtio,format=qcow2"
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT_SSH-:22,hostfwd=tcp:127.0.0.1:$PORT_HTTP-:8000,hostfwd=tcp:127.0.0.1:$PORT_HTTP2-:8001"
        -device virtio-net-pci,netdev=n0
        -daemonize -pidfile "$VM_RUN/qemu.pid")
    "${q[@]}" 2>"$VM_RUN/qemu.err" || { cat "$VM_RUN/qemu.err" >&2; return 1; }
    # The watcher: kills QEMU when the script that started it ($$) is gone or after
    # VM_MAX_SECONDS, whichever comes first. setsid + closed fds, so it holds no pipe of the
    # caller open (a $(...) around vm_start would otherwise never return).
    # shellcheck disable=SC2016 # expanded by the watcher's bash
    setsid bash -c 'owner=$1 qpid=$2 limit=$3 end=$((SECONDS + $3))
        while kill -0 "$qpid" 2>/dev/null; do
            if ! kill -0 "$owner" 2>/dev/null || ((SECONDS > end)); then
                kill "$qpid"; sleep 5; kill -9 "$qpid" 2>/dev/null; exit
            fi
            sleep 2
        done' vm-watch "$$" "$(cat "$VM_RUN/qemu.pid")" "${VM_MAX_SECONDS:-3600}" \
        </dev/null >/dev/null 2>&1 &
    echo "vm: qemu pid $(cat "$VM_RUN/qemu.pid"), ssh 127.0.0.1:$PORT_SSH, http $PORT_HTTP -> 8000, $PORT_HTTP2 -> 8001, console $VM_CONSOLE" >&2
    [[ ${VM_NO_WAIT:-0} == 1 ]] || vm_wait_ssh 600
}

vm_wait_ssh() {
    local limit=${1:-600} t0=$SECONDS pid
    pid=$(cat "$VM_RUN/qemu.pid" 2>/dev/null) || return 1
    while ((SECONDS - t0 < limit)); do
        if vm_run --timeout 15 true 2>/dev/null; then
            echo "vm: ssh up after $((SECONDS - t0)) s" >&2
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "vm: QEMU exited before ssh came up; console tail:" >&2
            tail -n 40 "$VM_CONSOLE" >&2
            return 1
        fi
        sleep 2
    done
    echo "vm: no ssh after ${limit} s; console tail:" >&2
    tail -n 40 "$VM_CONSOLE" >&2
    return 1
}

vm_stop() {
    [[ -n $VM_RUN && -d $VM_RUN ]] || return 0
    local pid="" i
    pid=$(cat "$VM_RUN/qemu.pid" 2>/dev/null) || true
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        # An orderly poweroff first (the disk is a throw-away overlay, but tests may look at
        # what the shutdown logged); -no-reboot makes QEMU exit when the guest is down.
        vm_run --timeout 10 'systemctl poweroff --no-block' >/dev/null 2>&1 || true
        for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    # Keep the console log when asked to (VM_KEEP_CONSOLE=FILE), for a CI artefact.
    [[ -z ${VM_KEEP_CONSOLE:-} ]] || cp "$VM_CONSOLE" "$VM_KEEP_CONSOLE" 2>/dev/null || true
    rm -rf "$VM_RUN"
    VM_RUN=""
}
