// The VS Code client of `archc lsp`: starts the server from the user's environment
// (setting `archc.path`, default `archc` on PATH) and restarts it when the setting changes.
"use strict";
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function serverOptions() {
  const command = vscode.workspace.getConfiguration("archc").get("path") || "archc";
  return { command, args: ["lsp"], transport: TransportKind.stdio };
}

async function start(context) {
  client = new LanguageClient("archc", "archc lsp", serverOptions(), {
    documentSelector: [{ language: "arch" }],
  });
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(
      `archc lsp did not start (${err}). Install it with \`pip install 'archc[lsp]'\` or set archc.path.`
    );
  }
}

async function activate(context) {
  await start(context);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration("archc.path")) {
        if (client) await client.stop();
        await start(context);
      }
    })
  );
}

async function deactivate() {
  if (client) await client.stop();
}

module.exports = { activate, deactivate };
