# smart-imaging behind proxy_pass: an upstream that answers chunked (no
# Content-Length), proxy_buffering on and off, a body that outgrows
# smart_imaging_buffer while it streams, and static files read through
# sendfile / aio threads / directio.

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = (
    'up/photo.jpg' => 'sk_coffee.jpg',
    'up/alpha.png' => 'sk_horse_alpha.png',
);

my $Bytes = SmartImaging::require_samples(\%Samples);
our ($Jpeg, $Png) = @$Bytes{'up/photo.jpg', 'up/alpha.png'};

no_long_string();

# An origin on a unix socket. SSI drops Content-Length, so the origin
# answers chunked, like many application servers do.
my $HttpConfig = SmartImaging::types_config() . <<'_EOC_';
    server {
        listen unix:$TEST_NGINX_HTML_DIR/origin.sock;
        root $TEST_NGINX_HTML_DIR;
        location /up/ {
            ssi on;
            ssi_types image/jpeg image/png;
            add_header Timing-Allow-Origin "*";
        }
    }
_EOC_

SmartImaging::add_block_defaults(
    http_config => $HttpConfig,
    user_files  => [['up/alpha.png', $Png], ['up/photo.jpg', $Jpeg]]);

# "--- webp: <user file>": the body is a complete WebP of that image's size.
SmartImaging::add_webp_check(\%Samples, complete => 1);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: chunked upstream, buffered proxy: converted, with a Content-Length
--- config
    location /up/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock;
        proxy_http_version 1.1;
    }
--- more_headers
Accept: image/webp,*/*
--- request
GET /up/photo.jpg
--- response_headers
Content-Type: image/webp
Vary: Accept
Timing-Allow-Origin: *
!Transfer-Encoding
--- webp: up/photo.jpg



=== TEST 2: chunked upstream, proxy_buffering off: converted
--- config
    location /up/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- more_headers
Accept: image/webp
--- request
GET /up/alpha.png
--- response_headers
Content-Type: image/webp
--- webp: up/alpha.png



=== TEST 3: chunked upstream outgrows smart_imaging_buffer mid-stream: original, intact
--- config
    location /up/ {
        smart_imaging on;
        smart_imaging_buffer 16k;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock;
        proxy_http_version 1.1;
        proxy_buffering off;
        proxy_buffer_size 4k;
    }
--- log_level: info
--- more_headers
Accept: image/webp
--- request
GET /up/photo.jpg
--- response_headers
Content-Type: image/jpeg
Vary: Accept
Timing-Allow-Origin: *
--- response_body eval
$::Jpeg
--- error_log
smart_imaging: body is over smart_imaging_buffer (16384 bytes), serving original



=== TEST 4: same, with proxy buffering: original, intact
--- config
    location /up/ {
        smart_imaging on;
        smart_imaging_buffer 16k;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock;
        proxy_http_version 1.1;
        proxy_buffers 4 4k;
    }
--- log_level: info
--- more_headers
Accept: image/webp
--- request
GET /up/photo.jpg
--- response_body eval
$::Jpeg
--- error_log
smart_imaging: body is over smart_imaging_buffer (16384 bytes), serving original



=== TEST 5: no WebP in Accept: chunked original streamed through untouched
--- config
    location /up/ {
        smart_imaging on;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/origin.sock;
        proxy_http_version 1.1;
    }
--- more_headers
Accept: image/png,image/*;q=0.8
--- request
GET /up/alpha.png
--- response_headers
Content-Type: image/png
Vary: Accept
--- response_body eval
$::Png



=== TEST 6: static file through sendfile + aio threads + directio: converted
--- main_config
    thread_pool smart_imaging threads=2;
--- config
    location /up/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        smart_imaging_thread_pool smart_imaging;
        sendfile on;
        aio threads=smart_imaging;
        directio 4k;
    }
--- more_headers
Accept: image/webp
--- request
GET /up/photo.jpg
--- response_headers
Content-Type: image/webp
--- webp: up/photo.jpg



=== TEST 7: static file through sendfile, no WebP: original bytes
--- config
    location /up/ {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
        sendfile on;
    }
--- request
GET /up/photo.jpg
--- response_headers
Content-Type: image/jpeg
--- response_body eval
$::Jpeg
