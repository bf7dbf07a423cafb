# Harness self-test (plain nginx, no module): no_root_location() with a
# "location /" of the block's own, and a block without "--- config" served
# by the nginx of the block before it (no_shuffle() keeps the order).  The
# real Test::Nginx does the same (t/run-real-test-nginx.sh).
#
#   TEST_NGINX_BINARY=/usr/sbin/nginx prove -I t/lib t/000-harness-noroot.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

if (!SmartImaging::nginx_binary_available()) {
    plan skip_all => 'no nginx binary (set TEST_NGINX_BINARY)';
}

no_root_location();
no_shuffle();
repeat_each(2);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: no_root_location(): a "location /" of the block's own
--- config
    location / {
        root $TEST_NGINX_HTML_DIR;
        add_header X-Own-Root yes;
    }
--- user_files
>>> kept.txt
kept
--- request
GET /kept.txt
--- response_headers
X-Own-Root: yes
--- response_body
kept



=== TEST 2: no "--- config": the nginx and the html dir of the block before
--- request
GET /kept.txt
--- response_headers
X-Own-Root: yes
--- response_body
kept
