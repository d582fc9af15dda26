#!/usr/bin/env bash
# Photographs for the photo-real synthetic generator (ASSETS.md lists each source and its licence): Debian's
# wallpaper packages, installed with apt where this user may (root, or sudo without a password). Without them the
# generator still runs on the textures that ship with pybullet_data (fewer photographs).
set -uo pipefail
packages=(gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ukui-wallpapers)
if dpkg -s "${packages[@]}" > /dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get > /dev/null; then
  echo "fourds_ros: no apt-get here; the photo-real generator uses pybullet_data's textures only" >&2
  exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2> /dev/null; then sudo=(sudo -n); else
    echo "fourds_ros: not root and no password-less sudo: install ${packages[*]} with apt for more photographs" >&2
    exit 0
  fi
fi
echo "fourds_ros: installing photographs for synthetic scenes (${packages[*]})" >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" > /dev/null \
  || echo "fourds_ros: apt-get could not install ${packages[*]}; the generator uses pybullet_data's textures only" >&2
