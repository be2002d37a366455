# Sourceable helpers to boot the forky test VM (packaging/vm/image.sh) under QEMU TCG (KVM
# fails on the CI machines) and drive it over ssh. Every call is bounded in time.
#
#   vm_start                  boot a throw-away copy (-snapshot), wait for ssh (<= 5 min)
#   vm_ssh CMD                run CMD as root in the VM
#   vm_run [--timeout S] CMD  the same, killed after S seconds (default 60)
#   vm_copy_in SRC DST        copy a file into the VM
#   vm_host_port GUESTPORT    host port forwarded to 8000 or 8001 in the VM
#   vm_stop                   power off (then kill)

VM_DIR=${VM_DIR:-}
VM_RUN=$(mktemp -d /tmp/picker-vm.XXXXXX)

_vm_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

VM_SSH_PORT=$(_vm_free_port)
declare -A VM_FWD=([8000]=$(_vm_free_port) [8001]=$(_vm_free_port))

_vm_ssh_opts() {
    echo -i "$VM_DIR/id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes
}

vm_ssh() {
    # shellcheck disable=SC2046
    ssh $(_vm_ssh_opts) -p "$VM_SSH_PORT" root@127.0.0.1 "$@"
}

# vm_run [--timeout SECS] CMD: vm_ssh with a time limit (default 60 s).
vm_run() {
    local t=60
    if [[ $1 == --timeout ]]; then t=$2; shift 2; fi
    # shellcheck disable=SC2046
    timeout "$t" ssh $(_vm_ssh_opts) -p "$VM_SSH_PORT" root@127.0.0.1 "$@"
}

vm_copy_in() {
    # shellcheck disable=SC2046
    scp -q $(_vm_ssh_opts) -P "$VM_SSH_PORT" "$1" "root@127.0.0.1:$2"
}

vm_host_port() { echo "${VM_FWD[$1]}"; }

vm_start() {
    if [[ -z $VM_DIR ]]; then
        VM_DIR=$("$(dirname "${BASH_SOURCE[0]}")/image.sh") || return 1
    fi
    command -v qemu-system-x86_64 >/dev/null || apt-get install -y -qq qemu-system-x86 >/dev/null
    command -v ssh >/dev/null || apt-get install -y -qq openssh-client >/dev/null
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 -display none \
        -snapshot -monitor none -serial "file:$VM_RUN/console.log" \
        -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0" \
        -drive "file=$VM_DIR/disk.img,if=virtio,format=raw" \
        -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$VM_SSH_PORT-:22,hostfwd=tcp:127.0.0.1:${VM_FWD[8000]}-:8000,hostfwd=tcp:127.0.0.1:${VM_FWD[8001]}-:8001" \
        -daemonize -pidfile "$VM_RUN/qemu.pid" || return 1
    local i
    for i in $(seq 300); do
        vm_ssh true 2>/dev/null && return 0
        kill -0 "$(cat "$VM_RUN/qemu.pid")" 2>/dev/null || break
        sleep 1
    done
    echo "VM did not come up; console tail:" >&2
    tail -30 "$VM_RUN/console.log" >&2
    return 1
}

vm_stop() {
    # The VM runs on a -snapshot copy: nothing to save, so no orderly shutdown is needed.
    [[ -f $VM_RUN/qemu.pid ]] || return 0
    local pid
    pid=$(cat "$VM_RUN/qemu.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$VM_RUN/qemu.pid"
}
