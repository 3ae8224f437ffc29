#!/bin/sh
# Turns a text file into a C definition: const char NAME[] = "...";
# usage: embed.sh NAME FILE
name=$1; file=$2
printf '/* generated from %s by scripts/embed.sh */\n#include <stddef.h>\nconst char %s[] =\n' "$file" "$name"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$file"
printf ';\nconst size_t %s_len = sizeof(%s) - 1;\n' "$name" "$name"
